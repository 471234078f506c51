"""fraudwatch webapp (see docs/architecture.md)."""
