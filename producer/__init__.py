"""fraudwatch producer (see docs/architecture.md)."""
