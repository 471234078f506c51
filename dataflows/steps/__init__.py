"""The flow's Bytewax steps: the composite operators and stateful logics that put the pure
detection core (``dataflows.detection``) into a dataflow. ``dataflows.fraud`` wires them.

- ``dead_letters``: ``split_dead_letters``, an ``@operator`` that splits a validated stream
  into ``oks`` and ``errs`` (dead letters), like Bytewax's own Kafka operators
"""
