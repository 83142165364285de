import pytest
from bhvit.models import build_model
from bhvit.models.cost import model_cost


@pytest.mark.parametrize(
    "precision, width, memory_mib, mops",
    [
        ("fp32", 1, 48.26, 2548.8),
        ("binary", 1, 1.55, 49.3),
        ("binary", 2, 6.11, 176.8),
        ("binary", 3, 13.68, 382.3),
    ],
)
def test_cost_reproduces_thesis_table_3(precision, width, memory_mib, mops):
    cost = model_cost(build_model("bhvit_tiny", precision=precision, width=width, num_classes=37))
    assert round(cost.memory_mib, 2) == memory_mib
    assert round(cost.mops, 1) == mops


def test_cost_w1_binary_breakdown_matches_spec_exactly():
    cost = model_cost(build_model("bhvit_tiny"))
    assert cost.flops == 9_652_736 and cost.bops == 2_539_180_032
    by_name = {layer.name: layer for layer in cost.layers}
    assert by_name["stem.conv"].macs == 9_633_792 and by_name["head"].macs == 18_944
    assert sum(layer.weight_bits for layer in cost.layers if layer.precision == "binary") == 12_630_016
    assert sum(layer.weight_bits // 16 for layer in cost.layers if layer.precision == "fp32") == 22_016
    stage2_qk = by_name["stages.2.blocks.0.attn.products"].macs * 6
    assert stage2_qk == 2 * 17_258_496  # Q.K^T and A.V (A.V charged once): 4 windows x 53^2 x 256 x 6 blocks
    assert (
        round(
            sum(layer.macs for layer in cost.layers if ".mlp." in layer.name and layer.name.startswith("stages.0"))
            / 1e6,
            1,
        )
        == 411.0
    )


def test_cost_tracks_classes_input_size_and_precision_map():
    base = model_cost(build_model("bhvit_tiny"))
    more_classes = model_cost(build_model("bhvit_tiny", num_classes=100))
    assert more_classes.flops - base.flops == 512 * 63
    small = model_cost(build_model("bhvit_tiny", img_size=64))
    assert small.bops < base.bops / 10
    fpds = model_cost(build_model("bhvit_tiny", fp_downsample=True))
    ds_macs = sum(ln.macs for ln in base.layers if ln.name.startswith("downsamples"))
    assert fpds.flops == base.flops + ds_macs
    assert fpds.bops == base.bops - ds_macs


def test_deployable_size_counts_fp_extras_beyond_weight_memory():
    binary = model_cost(build_model("bhvit_tiny"))
    # ~637k FP parameters (376k position embeddings) + BN statistics are stored on the device
    assert binary.deployable_mib > binary.memory_mib + 637_000 * 4 / 2**20
    fp32 = model_cost(build_model("bhvit_tiny", precision="fp32"))
    assert fp32.deployable_bytes > fp32.weight_bytes
