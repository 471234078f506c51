"""The detection core: pure Python, no Bytewax, Kafka, MongoDB or Flask.

The streaming dataflow and the file backtest run exactly this code, so they give the same
scores and alerts for the same per-card (and per-merchant) order. Its parts:

- ``ruleset``: the detection configuration (``config/rules.toml``) as a validated model
- ``state``: one card's compact state (recent transactions, habits, labels) and its packed form
- ``labels``: how a card's or merchant's labels decide what was known at a given event time
- ``merchant``: per-merchant daily counts and fraud labels, the learned merchant risk, and
  ``MerchantBook``, one shard's merchants
- ``signals``: each signal (rule) as a small function over a ``Window`` on the card's history
- ``scoring``: how signals combine into a score in [0, 1] and the alert decision
- ``features``: each judged transaction's named feature row, what models score and learn from
- ``policy``: the models and the operating points (model + threshold) that score a transaction
- ``detector``: judges one transaction: signals, score, explanation, state update
- ``explain``: a model's per-feature contributions as reasons in words
- ``cardbook``: many cards' packed states, the unit a card shard holds
- ``featurelog`` / ``training`` / ``quality``: the feature log's rows, the trainer's daily
  decision (train, validate, promote, size the threshold) and its quality measures
"""
