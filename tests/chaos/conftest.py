"""Every test here runs in two sizes: `make test` runs the reduced size, which still exercises
every case; `make chaos` sets ``FRAUDWATCH_CHAOS=full`` for the sizes docs/reliability.md states
its guarantees at."""
