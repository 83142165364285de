"""Fixtures for the device tests: tiny real artifacts (TVM + ONNX), the picamera2 stand-in, sample photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _testlib():
    """Import testlib.py by path as ``bhvit_device_testlib`` (test modules import it by that name)."""
    name = "bhvit_device_testlib"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("testlib.py"))
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


testlib = _testlib()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> testlib.ArtifactFactory:
    """Session cache of tiny artifacts built with TVM/onnx directly (skipped where the compiler is absent)."""
    pytest.importorskip("tvm.relax", reason="building test artifacts needs the TVM compiler")
    pytest.importorskip("onnx", reason="building test artifacts needs onnx")
    return testlib.ArtifactFactory(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def fake_camera(monkeypatch):
    """Install a picamera2 stand-in: ``fake_camera(frames, cameras=1, fail_after=None)`` returns the module."""

    def install(frames, cameras: int = 1, fail_after: int | None = None):
        module = testlib.fake_picamera2(list(frames), cameras, fail_after)
        monkeypatch.setitem(sys.modules, "picamera2", module)
        return module

    return install
