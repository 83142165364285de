"""``python3 -m bhvit.device`` is ``bhvit-device``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="bhvit-device")
