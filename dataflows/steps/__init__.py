"""The flow's Bytewax steps: the composite operators and stateful logics that put the pure
detection core (``dataflows.detection``) into a dataflow. ``dataflows.fraud`` wires them.

- ``dead_letters``: ``split_dead_letters``, an ``@operator`` that splits a validated stream
  into ``oks`` and ``errs`` (dead letters), like Bytewax's own Kafka operators
- ``shards``: the card and merchant shards as Bytewax state (a book each, idle eviction) and
  the per-partition watermarks that make card eviction safe
- ``policy_refresh``: the ``score`` step's look for new operating points between batches
- ``minute_stats``: per-minute counts for the dashboard and the Bytewax state that owns them
"""
