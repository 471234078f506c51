"""Baselines the dataflow is compared with on the same input topic (``bench.throughput``)."""
