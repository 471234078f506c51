"""``python -m producer``: see ``producer.cli``."""

from producer.cli import main

main()
