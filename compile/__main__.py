"""``python -m bhvit.compile`` is ``bhvit-compile``."""

from .cli import main

main()
