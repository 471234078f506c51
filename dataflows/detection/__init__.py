"""The detection core: pure Python, no Bytewax, Kafka, MongoDB or Flask.

The streaming dataflow and the file backtest run exactly this code, so they give the same
scores and alerts for the same per-card (and per-merchant) order. Its parts:

- ``state``: one card's compact state (recent transactions, habits, labels) and its packed form
- ``labels``: how a card's or merchant's labels decide what was known at a given event time
- ``merchant``: per-merchant daily counts and fraud labels, the learned merchant risk
- ``signals``: each signal (rule) as a small function over a ``Window`` on the card's history
- ``scoring``: how signals combine into a score in [0, 1], severity and alert decision
- ``detector``: judges one transaction: signals, score, explanation, state update
- ``cardbook`` / ``merchantbook``: many cards' / merchants' packed states, the unit a shard holds
"""
