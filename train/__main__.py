"""``python3 -m bhvit.train`` (what ``torchrun ... -m bhvit.train`` runs) is ``bhvit-train``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="bhvit-train")
