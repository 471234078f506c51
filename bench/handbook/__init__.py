"""The evaluation protocol of Le Borgne et al., *Reproducible Machine Learning for Credit Card
Fraud Detection* (the "handbook"): its week split and its baseline features, in numpy."""
