"""One function names a model variant; artifacts, run directories and study jobs all use it."""

from __future__ import annotations

from pathlib import Path

from bhvit.models import build_model, variant_name


def test_variant_name_tags_only_fields_that_differ_from_the_named_config():
    assert variant_name("bhvit_tiny") == "bhvit_tiny"
    assert variant_name("bhvit_tiny", width=1.0, img_size=224, fp_downsample=False) == "bhvit_tiny"
    assert variant_name("bhvit_tiny", width=3, fp_downsample=True) == "bhvit_tiny_w3_fpds"
    assert variant_name("bhvit_tiny_w3", width=3) == "bhvit_tiny_w3"  # the registered name already says it
    assert variant_name("test_bhvit", hidden_width=2, intermediate_width=4, img_size=32) == "test_bhvit_h2_i4_32"
    assert variant_name("test_bhvit", num_classes=3) == "test_bhvit_c3"
    assert variant_name("bhvit_tiny", always=("width",)) == "bhvit_tiny_w1"


def test_artifact_run_and_study_names_agree():
    from bhvit.compile.source import model_label
    from bhvit.train.config import TrainCfg
    from bhvit.train.run import default_out_dir

    model = build_model("test_bhvit", width=2, fp_downsample=True)
    assert model_label("test_bhvit", model) == "test_bhvit_w2_fpds.w1a1"
    run = default_out_dir(TrainCfg(model="test_bhvit", width=2, fp_downsample=True), root=Path("/nonexistent"))
    assert run.name == "test_bhvit_w2_fpds_binary_s0"
    narrow = default_out_dir(TrainCfg(model="test_bhvit", hidden_width=2, intermediate_width=4), Path("/nonexistent"))
    assert narrow.name == "test_bhvit_h2_i4_binary_s0"  # once the same directory as plain test_bhvit
