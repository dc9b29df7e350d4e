"""``python -m releasecache.cli``."""

from . import main

main()
