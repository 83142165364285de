"""The repository's documentation stands on its own: no pointers to developer notes, no dead relative links."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Notes the developers keep outside the repository; users of the repository do not have them.
# The patterns are split so that this file does not match itself.
PRIVATE_NOTES = re.compile("|".join(["shared" + "/docs", "pi-" + "testing", "tvm-" + "notes", "bhvit-" + "spec"]), re.I)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    """Files under version control; outside a git checkout, every file not in a hidden or cache folder."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = re.compile(r"(^|/)(\.[^/]+|__pycache__|[^/]+\.egg-info|build|dist|runs|artifacts)/")
        return [p for p in REPO.rglob("*") if p.is_file() and not skip.search(p.relative_to(REPO).as_posix())]
    return [REPO / name for name in out.decode().split("\0") if name]


def readmes() -> list[Path]:
    return [p for p in tracked_files() if p.name == "README.md"]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", re.sub(r"```.*?```", "", markdown, flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_no_tracked_file_points_at_developer_notes():
    hits = []
    for path in tracked_files():
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="ignore")
            hits += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in PRIVATE_NOTES.finditer(text)]
    assert not hits, "references to files users do not have:\n" + "\n".join(hits)


def test_every_room_has_a_readme():
    assert {p.parent.relative_to(REPO).as_posix() for p in readmes()} >= {
        ".",
        "models",
        "train",
        "compile",
        "device",
        "scripts",
    }


def test_relative_links_in_readmes_resolve():
    dead = []
    for readme in readmes():
        text = readme.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            file, _, anchor = target.partition("#")
            dest = (readme.parent / file).resolve() if file else readme
            where = f"{readme.relative_to(REPO)}: {target}"
            if not dest.exists():
                dead.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                dead.append(f"{where} (no such heading)")
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_anchor_rule_matches_github():
    assert anchors("## What CI covers, and what only real hardware does\n## `bhvit-cost`\n") == {
        "what-ci-covers-and-what-only-real-hardware-does",
        "bhvit-cost",
    }
