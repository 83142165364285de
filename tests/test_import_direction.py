"""Imports point one way: models imports none of train/compile/device, compile does not import train, and device
needs neither torch, timm nor the TVM compiler. Checked on the source text and by importing in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# room -> imports it must never make (module prefixes)
FORBIDDEN = {
    "models": ("bhvit.train", "bhvit.compile", "bhvit.device"),
    "compile": ("bhvit.train",),
    "device": ("bhvit.train", "bhvit.compile", "bhvit.models", "torch", "timm", "tvm.relax", "tvm.s_tir", "tvm.te"),
}


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (top level, in functions and in ``if`` branches alike)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_source_files_import_one_way(room):
    bad = []
    for path in sorted((ROOT / room).rglob("*.py")):
        package = "bhvit." + ".".join(path.relative_to(ROOT).parent.parts)
        for name in _imports(path, package):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[room]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_import_checker_sees_relative_and_nested_imports(tmp_path):
    """The static check above can fail: it resolves relative imports and finds imports inside functions."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from ..train import loop\n    import torch.nn\n")
    assert _imports(f, "bhvit.compile") == {"bhvit.train", "torch.nn"}


# Every device module imported with torch, timm and the TVM compiler made unimportable.
_BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    BLOCKED = ("torch", "timm", "tvm.relax", "tvm.s_tir", "tvm.te", "bhvit.train", "bhvit.compile", "bhvit.models")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked import of {name}")

    sys.meta_path.insert(0, Block())
    import bhvit.device as device
    for info in pkgutil.iter_modules(device.__path__):
        importlib.import_module(f"bhvit.device.{info.name}")
    print("ok", len(list(pkgutil.iter_modules(device.__path__))))
    """
)


def test_device_modules_import_without_torch_timm_or_the_tvm_compiler():
    done = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_importing_train_leaves_timm_unpatched():
    code = (
        "from timm.data import auto_augment as a; before = dict(a.NAME_TO_OP); "
        "import bhvit.train, bhvit.train.data, bhvit.train.cli; assert a.NAME_TO_OP == before"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
