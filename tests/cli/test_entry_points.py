"""Every CLI runs as its console script and as ``python -m bhvit.<part>``, and reports the installed version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points, version

import pytest

CLIS = {"bhvit-cost": "models", "bhvit-train": "train", "bhvit-compile": "compile", "bhvit-device": "device"}


def test_every_console_script_has_a_module_form():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name.startswith("bhvit-")}
    assert {name: f"bhvit.{part}.cli:main" for name, part in CLIS.items()} == scripts


@pytest.mark.parametrize("name, part", CLIS.items())
def test_python_dash_m_works_like_the_console_script(name, part):
    done = subprocess.run(
        [sys.executable, "-m", f"bhvit.{part}", "--version"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{name}, version {version('bhvit')}"
    usage = subprocess.run(
        [sys.executable, "-m", f"bhvit.{part}", "--help"], capture_output=True, text=True, timeout=300
    )
    assert usage.returncode == 0 and usage.stdout.startswith(f"Usage: {name} ")
