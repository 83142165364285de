"""A broken deploy form is refused: verification fails, nothing is written and ``artifacts/latest`` stays.

Each fault is injected through one seam (a monkeypatched function) into the compile of a trained-like test_bhvit:
a BatchNorm fold dropped, one shift-branch tap of the deploy form zeroed, the bit order of packed weights reversed.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from bhvit.compile import cli
from bhvit.compile.artifact import update_latest
from bhvit.compile.compiler import CompileOptions, VerificationFailed, compile_model
from bhvit.compile.source import ModelSourceError, random_init
from bhvit.compile.targets import resolve_target
from bhvit.device import cli as device_cli
from bhvit.device.sources import SAMPLES_DIR
from bhvit.models import perturb_like_trained
from bhvit.models.bhvit import DeployBlockTail
from bhvit.models.layers.shift import stencil_offsets, stencil_reach
from click.testing import CliRunner

pytestmark = pytest.mark.tvm


def drop_one_fold(monkeypatch) -> None:
    """The first BatchNorm folded into a binary layer's epilogue is treated as identity (and so lost)."""
    from bhvit.models.layers import binary

    real, calls = binary.bn_affine, []

    def first_as_identity(norm):
        s, t = real(norm)
        calls.append(norm)
        return (torch.ones_like(s), torch.zeros_like(t)) if len(calls) == 1 else (s, t)

    monkeypatch.setattr(binary, "bn_affine", first_as_identity)


def zero_one_shift_branch(monkeypatch) -> None:
    """The deploy form that gets exported has the first block tail's stencil tap one row up at 0 (only the shift
    branches read that offset)."""
    from bhvit.compile import lower

    real = lower.to_deploy

    def zeroed(model, *args, **kwargs):
        deploy = real(model, *args, **kwargs)
        tail = next(m for m in deploy.modules() if isinstance(m, DeployBlockTail))
        tail.taps[:, stencil_offsets(stencil_reach(tail.taps.shape[1])).index((-1, 0))] = 0.0
        return deploy

    monkeypatch.setattr(lower, "to_deploy", zeroed)


def reverse_bit_order(monkeypatch) -> None:
    """Packed weights with the bits of every 64-bit word reversed (activations keep the kernels' order)."""
    from bhvit.compile.kernels import packing

    real = packing.pack_bits

    def reversed_words(bits, axis=-1):
        words = np.ascontiguousarray(real(bits, axis))
        flipped = np.unpackbits(words.view(np.uint8), bitorder="little").reshape(*words.shape, 64)[..., ::-1]
        return np.packbits(flipped, axis=-1, bitorder="little").view(np.uint64).reshape(words.shape)

    monkeypatch.setattr(packing, "pack_bits", reversed_words)


FAULTS = {
    "dropped-fold": drop_one_fold,
    "zeroed-shift-branch": zero_one_shift_branch,
    "reversed-bits": reverse_bit_order,
}


@pytest.fixture
def artifacts_dir(tmp_path, monkeypatch):
    """A working directory whose ``artifacts/latest`` already points at an earlier artifact."""
    monkeypatch.chdir(tmp_path)
    previous = tmp_path / "artifacts" / "previous"
    previous.mkdir(parents=True)
    update_latest(previous)
    return tmp_path / "artifacts"


def _untouched(artifacts_dir) -> bool:
    return (
        sorted(p.name for p in artifacts_dir.iterdir()) == ["latest", "previous"]
        and os.readlink(artifacts_dir / "latest") == "previous"
    )


@pytest.mark.parametrize("fault", FAULTS)
def test_broken_deploy_form_fails_verification_and_leaves_nothing(fault, monkeypatch, artifacts_dir):
    FAULTS[fault](monkeypatch)
    source = random_init("test_bhvit")
    perturb_like_trained(source.model, seed=1)
    with pytest.raises(VerificationFailed) as failure:
        compile_model(source, CompileOptions(resolve_target("host")))
    assert not failure.value.verification.passed
    assert _untouched(artifacts_dir)


def test_cli_refusal_exits_1_with_the_numbers(monkeypatch, artifacts_dir):
    reverse_bit_order(monkeypatch)
    result = CliRunner().invoke(cli.main, ["--random-init", "--model", "test_bhvit", "--target", "host"])
    assert result.exit_code == 1, result.output
    assert "verification failed: 0 of 27 inputs exact" in result.output and "relative logit error" in result.output
    assert "nothing was written" in result.output
    assert _untouched(artifacts_dir)


def test_no_verify_builds_an_unverified_artifact_and_eval_dir_scores_it(tmp_path):
    data = tmp_path / "data"
    for i, photo in enumerate(("chelsea", "coffee", "astronaut")):
        (data / f"class_{i}").mkdir(parents=True)
        (data / f"class_{i}" / f"{photo}.png").symlink_to(SAMPLES_DIR / f"{photo}.png")
    out = tmp_path / "art"
    args = ["--random-init", "--model", "test_bhvit", "--target", "host", "--no-verify", "-o", out, "--eval-dir", data]
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "recorded as unverified" in result.output and "evaluation on 3 images" in result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["verification"] is None
    evaluation = meta["evaluation"]
    assert evaluation["images"] == 3 and evaluation["agreement"] == 100.0
    assert evaluation["artifact_top1"] == evaluation["pytorch_top1"] and evaluation["runs_on"] == "artifact"
    info = CliRunner().invoke(device_cli.main, ["info", "--artifact", str(out)])
    assert "verified   no (--no-verify)" in info.output and "evaluated  evaluation on 3 images" in info.output


def test_attention_levels_the_kernels_lack_are_refused(tmp_path):
    source = random_init("test_bhvit", attn_levels=2)
    with pytest.raises(ModelSourceError, match="attn_levels=2 is not supported.*implement 3 levels"):
        compile_model(source, CompileOptions(resolve_target("host"), tmp_path / "a"))
    assert not (tmp_path / "a").exists()
