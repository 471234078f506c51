"""Shared core of fraudwatch: the event contract, card-data hygiene and settings.

Nothing in this package talks to Kafka, MongoDB or Bytewax at import time, so
the dataflow, the producer and the web app can all import it cheaply.
"""

__version__ = "0.1.0"
