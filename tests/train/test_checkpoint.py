"""Checkpoint format: safetensors + JSON header, atomic writes, resume-state codec, warm starts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from bhvit.models import build_model
from bhvit.models.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from bhvit.train.checkpoint import config_diff, load_matching, load_train_state, rng_state, save_last, set_rng_state
from safetensors.torch import save_file


def _spec(model, name="test_bhvit"):
    return {"family": "bhvit", "model": name, "config": model.cfg.to_dict()}


def _meta(model):
    names = [f"c{i}" for i in range(model.cfg.num_classes)]
    return {**_spec(model), "class_names": names, "preprocess": {"input_size": [3, 64, 64]}}


def _trained_binary_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("test_bhvit", precision="binary", num_classes=3)
    model.train()
    with torch.no_grad():  # initialises the attention quantisers and moves BN statistics away from defaults
        model(torch.randn(4, 3, 64, 64))
    return model.eval()


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path):
    model = _trained_binary_model()
    save_checkpoint(tmp_path / "m.safetensors", model, _meta(model))
    loaded, meta = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), loaded(x))
    assert meta["model"] == "test_bhvit" and meta["class_names"] == ["c0", "c1", "c2"]
    assert not loaded.training


def test_checkpoint_train_state_roundtrip_restores_optimizer(tmp_path):
    model = _trained_binary_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    state = {"epoch": 3, "optimizer": opt.state_dict(), "t": (1, 2.5, None)}
    save_last(tmp_path / "last.safetensors", model, _meta(model), state)
    back = load_train_state(tmp_path / "last.safetensors")
    assert back["epoch"] == 3 and back["t"] == (1, 2.5, None)
    assert all(isinstance(k, int) for k in back["optimizer"]["state"])  # param ids stay ints
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    k = next(iter(opt.state_dict()["state"]))
    assert torch.equal(fresh.state_dict()["state"][k]["exp_avg"], opt.state_dict()["state"][k]["exp_avg"])
    # the resume tensors never leak into the model weights
    loaded, _ = load_checkpoint(tmp_path / "last.safetensors")
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_checkpoint_rng_state_roundtrip_replays_every_generator(tmp_path):
    model = build_model("test_bhvit", num_classes=3)
    save_last(tmp_path / "last.safetensors", model, _meta(model), {"rng": rng_state()})
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_train_state(tmp_path / "last.safetensors")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws


def test_checkpoint_train_state_refuses_pickled_code(tmp_path):
    """The resume state is loaded with weights_only: a blob that would call a function is refused, not run."""
    import io

    from bhvit.models.checkpoint import save_checkpoint as save_raw

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save({"epoch": Evil()}, buffer)
    blob = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    model = build_model("test_bhvit", num_classes=3)
    save_raw(tmp_path / "last.safetensors", model, _meta(model), {"resume": blob})
    with pytest.raises(CheckpointError, match="unreadable training state"):
        load_train_state(tmp_path / "last.safetensors")


def test_checkpoint_without_train_state_cannot_be_resumed(tmp_path):
    model = build_model("test_bhvit", num_classes=3)
    save_checkpoint(tmp_path / "best.safetensors", model, _meta(model))
    with pytest.raises(CheckpointError, match="holds no training state"):
        load_train_state(tmp_path / "best.safetensors")


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained_cfg_overlay", "pretrained"])
def test_checkpoint_timm_config_refuses_keywords_outside_the_allow_list(tmp_path, key):
    model = build_model("test_bhvit", num_classes=3)
    meta = {
        "family": "timm",
        "model": "deit_tiny_patch16_224",
        "config": {"num_classes": 3, key: str(tmp_path / "x.pth")},
        "class_names": ["a", "b", "c"],
        "preprocess": {"input_size": [3, 224, 224]},
    }
    save_checkpoint(tmp_path / "t.safetensors", model, meta)
    with pytest.raises(CheckpointError, match=f"may not pass to timm.create_model: {key}"):
        load_checkpoint(tmp_path / "t.safetensors")


def test_checkpoint_timm_config_with_allowed_keywords_builds_the_model():
    from bhvit.models.checkpoint import model_from_spec

    spec = {"family": "timm", "model": "deit_tiny_patch16_224", "config": {"num_classes": 3, "img_size": 64}}
    model = model_from_spec(spec)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable safetensors file"),
        (b"garbage" * 10, "not a readable safetensors file"),
        (None, "without bhvit metadata"),
    ],
)
def test_checkpoint_load_rejects_corrupt_or_foreign_file(tmp_path, content, message):
    path = tmp_path / "ckpt.safetensors"
    if content is None:  # a valid safetensors file that bhvit-train did not write
        save_file({"w": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_checkpoint_load_rejects_truncated_file(tmp_path):
    model = _trained_binary_model()
    save_checkpoint(tmp_path / "m.safetensors", model, _meta(model))
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "m.safetensors")


def test_checkpoint_atomic_write_keeps_old_file_when_writer_dies(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def dies(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_checkpoint_load_matching_fp_into_binary_reports_missing_quantizers(tmp_path):
    fp = build_model("test_bhvit", precision="fp32", num_classes=3)
    save_checkpoint(tmp_path / "fp.safetensors", fp, _meta(fp))
    binary = build_model("test_bhvit", precision="binary", num_classes=3)
    report = load_matching(binary, tmp_path / "fp.safetensors", _spec(binary))
    assert report.missing and all("quantizer" in n for n in report.missing)
    assert not report.mismatched
    for name, t in binary.state_dict().items():
        if name in report.loaded:
            assert torch.equal(t, fp.state_dict()[name]), name


def test_checkpoint_load_matching_refuses_other_width(tmp_path):
    narrow = build_model("test_bhvit", num_classes=3)
    save_checkpoint(tmp_path / "w1.safetensors", narrow, _meta(narrow))
    wide = build_model("test_bhvit", width=2, num_classes=3)
    with pytest.raises(CheckpointError, match="another architecture or width"):
        load_matching(wide, tmp_path / "w1.safetensors", _spec(wide))


def test_config_diff_lists_each_differing_field():
    config = build_model("test_bhvit", num_classes=3).cfg.to_dict()
    assert config_diff(json.loads(json.dumps(config)), config) == []  # stored lists equal the run's tuples
    assert config_diff(config, {**config, "width": 2.0, "base_dims": (8, 16, 32, 64)}) == [
        "width: 1.0 in the checkpoint, 2.0 in this run",
        "base_dims: [16, 32, 64, 128] in the checkpoint, [8, 16, 32, 64] in this run",
    ]
    assert config_diff({"model": "a"}, {"model": "a", "recu": False}) == [
        "recu: None in the checkpoint, False in this run"
    ]


def test_checkpoint_load_matching_plain_file_reports_head_mismatch(tmp_path):
    model = build_model("test_bhvit", num_classes=3)
    other = build_model("test_bhvit", num_classes=5)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "plain.safetensors"))
    report = load_matching(model, tmp_path / "plain.safetensors", _spec(model))
    assert sorted(n.split()[0] for n in report.mismatched) == ["head.bias", "head.weight"]
    assert "head.weight" in report.summary()


def test_checkpoint_read_meta_validates_header(tmp_path):
    model = build_model("test_bhvit", num_classes=3)
    save_checkpoint(tmp_path / "m.safetensors", model, {"family": "bhvit", "model": "test_bhvit"})
    with pytest.raises(CheckpointError, match="lacks config, class_names, preprocess"):
        read_meta(tmp_path / "m.safetensors")
