"""fraudwatch producer: card traffic with labelled fraud, file replay (see docs/producer.md)."""
