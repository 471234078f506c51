"""Benchmarks of the whole pipeline on the local stack: ``python -m bench --quick|--full``."""
