"""Developer tooling for working on fraudwatch locally; no production component imports it.

- ``devtools.stack``: builds and runs the local stack (Kafka KRaft from Maven Central,
  FerretDB from the Go module proxy); ``make up`` / ``down`` / ``status`` / ``test``.
- ``devtools.supervisor``: ``make run``, the stack plus every component in one terminal.
- ``devtools.demo_data``: synthetic alerts and minute statistics in the dataflow's document
  shape, for the console's ``seed-demo`` command, the tests and the benchmarks.
"""
