import pytest
import torch
from bhvit.models.layers.shift import (
    AxisShiftMean,
    ChannelGroupShift,
    ShiftBranches,
    circular_shift,
    stencil_offsets,
    stencil_reach,
    stencil_taps,
)


@pytest.mark.parametrize("shift", [-9, -2, -1, 0, 1, 2, 7])
@pytest.mark.parametrize("dim", [2, 3])
def test_circular_shift_equals_torch_roll(shift, dim):
    x = torch.randn(2, 8, 7, 5)
    assert torch.equal(circular_shift(x, shift, dim), torch.roll(x, shift, dim))


@pytest.mark.parametrize("reach", [1, 2])
def test_axis_shift_mean_averages_circular_neighbours(reach):
    x = torch.randn(1, 4, 6, 6)
    expected = torch.stack([torch.roll(x, s, 2) for s in range(-reach, reach + 1)]).mean(0)
    assert torch.allclose(AxisShiftMean(reach, 2)(x), expected, atol=1e-6)


def test_channel_group_shift_moves_each_quarter_its_own_way():
    x = torch.arange(8 * 5 * 5, dtype=torch.float32).reshape(1, 8, 5, 5)
    y = ChannelGroupShift(2)(x)
    assert torch.equal(y[:, 0:2], torch.roll(x[:, 0:2], 2, 2))
    assert torch.equal(y[:, 2:4], torch.roll(x[:, 2:4], -2, 2))
    assert torch.equal(y[:, 4:6], torch.roll(x[:, 4:6], 2, 3))
    assert torch.equal(y[:, 6:8], torch.roll(x[:, 6:8], -2, 3))


def test_shift_branches_start_switched_off():
    z = torch.randn(2, 8, 4, 4)
    assert torch.count_nonzero(ShiftBranches(8)(z)) == 0
    assert len(ShiftBranches(8, shift3=True, shift5=False).ops) == 3


@pytest.mark.parametrize("shift3,shift5", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("size", [(7, 7), (5, 3), (2, 2), (1, 1)], ids=["7x7", "5x3", "2x2-wraps", "1x1"])
@pytest.mark.parametrize("channels", [8, 10])
def test_shift_branches_are_their_stencil(shift3, shift5, size, channels):
    """The branches with trained-like LayerScales are ``bias + sum_t taps[:, t] * roll(z)``, also on maps smaller
    than the reach (offsets wrap) and with channel groups of unequal size (10 channels: 3, 3, 3, 1)."""
    torch.manual_seed(0)
    branches = ShiftBranches(channels, shift3, shift5)
    for scale in branches.scales:
        scale.alpha.data.normal_()
        scale.beta.data.normal_()
    z = torch.randn(2, channels, *size)
    taps, bias = branches.stencil(channels)
    assert branches.reach == (2 if shift5 else 1 if shift3 else 0) and taps.shape == (channels, 4 * branches.reach + 1)
    got = bias.view(1, -1, 1, 1).expand_as(z)
    for t, (dh, dw) in enumerate(stencil_offsets(branches.reach)):
        got = got + taps[:, t].view(1, -1, 1, 1) * torch.roll(z, (-dh, -dw), (2, 3))
    expected = branches(z)
    torch.testing.assert_close(got, torch.zeros_like(z) if expected is None else expected, atol=1e-5, rtol=1e-5)


def test_stencil_offsets_list_the_cross():
    assert stencil_offsets(0) == [(0, 0)]
    assert stencil_offsets(1) == [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    assert len(set(stencil_offsets(2))) == 9


def test_stencil_reach_inverts_the_tap_count_and_refuses_other_counts():
    assert [stencil_reach(stencil_taps(r)) for r in range(4)] == [0, 1, 2, 3]
    assert [len(stencil_offsets(r)) for r in range(4)] == [stencil_taps(r) for r in range(4)]
    for taps in (0, 6, 8):
        with pytest.raises(ValueError, match="no cross stencil"):
            stencil_reach(taps)
