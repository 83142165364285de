"""Scripts and documented commands run on stock Debian / Raspberry Pi OS, which have ``python3`` but no ``python``;
the declared minimum Python matches what the code imports."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `python` as a command: at a line start, after a shell separator, a backtick, an env assignment or a shebang.
BARE_PYTHON = re.compile(r"(^|[\s`;&|(]|/env |#!)python(?=\s|$)(?!\s*=)", re.MULTILINE)


def _texts():
    for pattern in ("scripts/**/*", "*.md", "**/*.md", ".ci/*"):
        for path in ROOT.glob(pattern):
            if path.is_file() and ".pkg" not in path.parts and path.suffix not in (".png", ".jpg"):
                yield path, path.read_text(errors="replace")


def test_no_script_or_document_calls_bare_python():
    calls = []
    for path, text in _texts():
        for line in text.splitlines():
            if BARE_PYTHON.search(line.replace("```python", "")):
                calls.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert calls == []


def test_bare_python_pattern_finds_commands_only():
    assert BARE_PYTHON.search("python scripts/study.py x") and BARE_PYTHON.search("#!/usr/bin/env python")
    assert BARE_PYTHON.search("PIP=`python -m pip`") and BARE_PYTHON.search("A=1 python x.py")
    assert not BARE_PYTHON.search("python3 scripts/study.py") and not BARE_PYTHON.search("opencv-python-headless")
    assert not BARE_PYTHON.search('    python = root / "usr/bin/python3.11"')


def test_requires_python_covers_tomllib():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    uses_tomllib = any("import tomllib" in p.read_text() for p in ROOT.glob("scripts/*.py"))
    assert uses_tomllib and project["requires-python"] == ">=3.11"  # tomllib is new in Python 3.11
