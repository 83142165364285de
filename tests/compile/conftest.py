"""Session-cached compiles of the tiny ``test_bhvit`` model (each takes ~10-25 s on the 2-core CI machine)."""

from __future__ import annotations

from pathlib import Path

import pytest


class Compiled:
    """Lazily compiled artifacts keyed by (precision, fp_downsample, target, format, verify, trained, img_size).

    ``trained``: every parameter and buffer moved away from its init (:func:`bhvit.models.perturb_like_trained`);
    ``img_size``: the input resolution, the test model's 64 px unless given."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[tuple, tuple] = {}

    def __call__(
        self,
        precision: str = "binary",
        fp_downsample: bool = False,
        target: str = "host",
        fmt: str = "tvm",
        verify: bool | None = None,
        trained: bool = False,
        img_size: int | None = None,
    ):
        key = (precision, fp_downsample, target, fmt, verify, trained, img_size)
        if key not in self._cache:
            from bhvit.compile.compiler import CompileOptions, compile_model
            from bhvit.compile.source import random_init
            from bhvit.compile.targets import resolve_target
            from bhvit.models import perturb_like_trained

            source = random_init(
                "test_bhvit", precision=precision, fp_downsample=fp_downsample or None, img_size=img_size
            )
            if trained:
                perturb_like_trained(source.model, seed=1)
            out = self.root / "_".join(str(k) for k in key)
            _, meta = compile_model(source, CompileOptions(resolve_target(target), out, fmt, verify))
            self._cache[key] = (source, out, meta)
        return self._cache[key]


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> Compiled:
    pytest.importorskip("tvm.relax", reason="compiling needs the TVM compiler")
    return Compiled(tmp_path_factory.mktemp("compiled"))
