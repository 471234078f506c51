"""Shared core of fraudwatch, imported by the dataflow, the producer and the web app.

It holds the event contract and the alerts' MongoDB storage, card-data hygiene (Luhn,
tokens, masking), the typed settings and the Kafka/MongoDB clients and topics built from
them, JSON logging and great-circle distance. Nothing in it talks to Kafka, MongoDB or
Bytewax at import time, so importing it is cheap. Developer tooling (the local stack,
``make run``, demo data) lives in ``devtools``.
"""

__version__ = "0.1.0"
