"""The dataflow's I/O: everything that talks to Kafka, MongoDB or Prometheus.

- ``kafka_io``: the partitioned Kafka source and the delivery-checked Kafka sink
- ``mongo_io``: the alert and minute-stats sinks (background writes, bounded retry, epoch
  barrier) and ``connect``
- ``model_store``: the model registry in MongoDB (the trainer writes it, the dataflow reads
  operating points from it)
- ``prometheus``: the dataflow's counters, served by Bytewax next to its own metrics

Nothing here decides anything about a transaction: the detection core does that.
"""
