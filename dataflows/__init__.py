"""The fraud dataflow, its trainer and its file backtest (module map: docs/architecture.md).

Laid out by role:

- ``fraud`` wires the Bytewax dataflow (``python -m bytewax.run dataflows.fraud``); ``run``
  starts it with recovery, ``trainer`` and ``backtest`` are the other entry points;
  ``settings`` holds their typed settings
- ``validation``: raw records into PAN-free events or dead letters, the flow's first step
- ``steps/``: the Bytewax composite operators and stateful logics around the core
- ``detection/``: the pure detection core (no Bytewax, Kafka, MongoDB or Flask)
- ``io/``: everything that talks to Kafka, MongoDB or Prometheus
"""
