"""fraudwatch dataflows (see docs/architecture.md)."""
