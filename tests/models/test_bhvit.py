import pytest
import torch
from bhvit.models import BHViTCfg, ConfigError, build_model, list_models
from bhvit.models.bhvit import AttentionProducts
from bhvit.models.layers import AttentionQuantizer, BinaryConv2d, BinaryLinear, SignQuantizer


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("precision", ["binary", "fp32"])
def test_bhvit_tiny_output_shape_at_224(width, precision):
    model = build_model("bhvit_tiny", width=width, precision=precision, num_classes=37).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 224, 224))
        out = model.forward_head(feats)
    assert feats.shape == (1, 512 * width, 7, 7)
    assert out.shape == (1, 37)


def test_stage_shapes_follow_the_spec_table():
    model = build_model("bhvit_tiny").eval()
    shapes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
        for m in [model.stem, *model.stages, *model.downsamples]
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert shapes == [
        (1, 64, 56, 56),
        (1, 64, 56, 56),
        (1, 128, 28, 28),
        (1, 128, 28, 28),
        (1, 256, 14, 14),
        (1, 256, 14, 14),
        (1, 512, 7, 7),
        (1, 512, 7, 7),
    ]


def test_attention_builds_53_and_50_token_windows_at_224():
    model = build_model("bhvit_tiny").eval()
    seen = []
    for stage in (2, 3):
        model.stages[stage].blocks[0].attn.products.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert seen == [(4, 53, 256), (1, 50, 512)]


def test_binary_model_backward_reaches_latent_weights():
    torch.manual_seed(0)
    model = build_model("test_bhvit").train()
    out = model(torch.randn(4, 3, 64, 64))
    (out.logsumexp(1).mean() + model.regularization_loss()).backward()
    binary = [m for m in model.modules() if isinstance(m, (BinaryLinear, BinaryConv2d)) and m.is_binary]
    assert binary and all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in binary)
    quantizers = [m for m in model.modules() if isinstance(m, AttentionQuantizer)]
    assert quantizers and all(q.alpha.grad is not None for q in quantizers)


def test_small_input_model_loss_falls_in_a_few_steps():
    torch.manual_seed(0)
    model = build_model("bhvit_tiny", img_size=64, num_classes=4, width=0.25, drop_path_rate=0.0).train()
    x = torch.randn(16, 3, 64, 64)
    y = torch.arange(16) % 4
    x += y.view(-1, 1, 1, 1).float()  # class-dependent brightness: learnable
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3


def test_fp32_model_is_same_architecture_without_quantisers():
    binary, fp = build_model("test_bhvit", precision="binary"), build_model("test_bhvit", precision="fp32")
    assert not any(isinstance(m, (SignQuantizer, AttentionQuantizer)) for m in fp.modules())
    assert any(isinstance(m, AttentionQuantizer) for m in binary.modules())
    fp_names = set(fp.state_dict())
    assert fp_names <= set(binary.state_dict())
    assert {n for n in set(binary.state_dict()) - fp_names} == {n for n in binary.state_dict() if ".quantizer." in n}
    assert fp.regularization_loss().item() == 0.0


def test_precision_presets_switch_the_named_layer_groups():
    fpds = build_model("test_bhvit", precision="binary_fpds")
    assert all(not d.conv.is_binary for d in fpds.downsamples)
    assert fpds.stages[0].blocks[0].convs[0].is_binary
    s3 = build_model("test_bhvit", precision="binary_fp_s3attn")
    precisions = {i.name: i.precision for i in s3.binary_layers()}
    assert precisions["stages.3.blocks.0.attn.q.proj"] == "fp32"
    assert precisions["stages.3.blocks.0.attn.products"] == "fp32"
    assert precisions["stages.3.blocks.0.tail.mlp.fc1"] == "binary"
    assert precisions["stages.2.blocks.0.attn.q.proj"] == "binary"


def test_precision_map_globs_match_real_module_names():
    from bhvit.models import PrecisionCfg

    cfg = PrecisionCfg(
        "binary",
        (
            ("*.tail.mlp.fc2", "fp32"),
            ("stages.1.blocks.1.convs.2", "fp32"),
            ("stages.2.blocks.*.attn.k.proj", "fp32"),
            ("stages.3.*.products", "fp32"),
        ),
    )
    model = build_model("bhvit_tiny", img_size=64, precision=cfg)
    for info in model.binary_layers():
        assert info.precision == cfg.precision_of(info.name), info.name
    assert sum(i.precision == "fp32" for i in model.binary_layers()) == 12 + 1 + 6 + 2


def test_fp_downsample_variant_has_no_shortcut_parameters():
    model = build_model("test_bhvit", fp_downsample=True)
    assert all(d.plain and not d.conv.is_binary for d in model.downsamples)
    assert not any(k.startswith("downsamples.") and ".act." in k for k in model.state_dict())


def test_binary_layers_lists_kinds_shapes_and_precision():
    infos = build_model("bhvit_tiny").binary_layers()
    by_kind = {}
    for info in infos:
        by_kind[info.kind] = by_kind.get(info.kind, 0) + 1
    # 4 MSGDC blocks x 3 convs + 3 downsampling convs; 8 MSMHA blocks x 4 + 12 blocks x 2 linears; 8 attentions
    assert by_kind == {"conv2d": 15, "linear": 56, "attention": 8}
    assert all(i.precision == "binary" for i in infos)
    assert ("downsamples.0.conv", "conv2d", (128, 64, 2, 2), "binary") in [
        (i.name, i.kind, i.weight_shape, i.precision) for i in infos
    ]


def test_regularization_loss_excludes_downsampling_convs():
    model = build_model("test_bhvit")
    terms = [
        (m.weight.abs() - 1).abs().mean()
        for n, m in model.named_modules()
        if isinstance(m, (BinaryLinear, BinaryConv2d)) and m.is_binary and not n.startswith("downsamples")
    ]
    assert torch.allclose(model.regularization_loss(), torch.stack(terms).mean())
    with torch.no_grad():
        model.downsamples[0].conv.weight.mul_(100)
    assert torch.allclose(model.regularization_loss(), torch.stack(terms).mean())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"width": 1.03}, "not divisible by 4"),
        ({"heads": (1, 1, 3, 8)}, "not divisible by its 3 heads"),
        ({"intermediate_width": 0.5, "base_mlp": (32, 1024, 1024, 2048)}, "not a multiple"),
        ({"img_size": 100}, "multiple of patch_size"),
        ({"img_size": 256}, "not divisible by the attention window"),
        ({"widht": 2}, "did you mean 'width'"),
        ({"precision": "binary_fdps"}, "did you mean 'binary_fpds'"),
    ],
)
def test_invalid_configs_fail_at_construction_with_a_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model("bhvit_tiny", **overrides)


@pytest.mark.parametrize("img_size, patch_size", [(64, 4), (112, 2), (448, 4)])
def test_non_224_inputs_work_where_windows_fit(img_size, patch_size):
    model = build_model("bhvit_tiny", img_size=img_size, patch_size=patch_size, width=0.25, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, img_size, img_size)).shape == (1, 5)


def test_config_round_trips_through_dict():
    cfg = build_model("bhvit_tiny_w3_fpds", precision="binary_fp_s3attn").cfg
    assert BHViTCfg.from_dict(cfg.to_dict()) == cfg


def test_every_registered_variant_builds():
    assert {"bhvit_tiny", "bhvit_tiny_w3", "bhvit_tiny_w3_fpds", "test_bhvit"} <= set(list_models())
    for name in list_models():
        cfg = build_model(name, img_size=64).cfg
        assert cfg.img_size == 64


def test_eval_graph_exports_without_data_dependent_control_flow():
    model = build_model("test_bhvit").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ep = torch.export.export(model, (x,))
        assert torch.allclose(ep.module()(x), model(x), atol=1e-5)
    assert any(isinstance(m, AttentionProducts) for m in model.modules())
