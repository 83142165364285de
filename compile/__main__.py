"""``python3 -m bhvit.compile`` is ``bhvit-compile``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="bhvit-compile")
