"""``python3 -m bhvit.models`` is ``bhvit-cost``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="bhvit-cost")
