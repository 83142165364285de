"""Lowering of the attention's head split: the packs of q, k and v read the token-major tensors and add the learnable
shifts themselves, and the result equals the deploy ops' own PyTorch implementation."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")
import torch  # noqa: E402
from bhvit.compile.lower import to_relax  # noqa: E402
from bhvit.compile.targets import resolve_target  # noqa: E402
from bhvit.models.layers.deploy_ops import binary_av, binary_qk  # noqa: E402
from tvm import relax  # noqa: E402

HOST = resolve_target("host").tvm_target()
B, N, H, D = 2, 53, 3, 64


class _Products(torch.nn.Module):
    """The deploy form's attention products on shifted tokens (q and v shifted per channel), head split as the model
    writes it (``unflatten(-1, (H, d)).transpose(1, 2)``), plus one operand that is no head split (``levels``); k
    gets a per-token offset instead (a parameter viewed to (n, C)), which the pack must not take for a shift."""

    def __init__(self):
        super().__init__()
        rng = torch.Generator().manual_seed(3)
        self.q_shift = torch.nn.Parameter(torch.randn(H * D, generator=rng))
        self.v_shift = torch.nn.Parameter(torch.randn(H * D, generator=rng))
        self.k_offset = torch.nn.Parameter(torch.randn(N * H * D, generator=rng))

    def forward(self, t: torch.Tensor, levels: torch.Tensor):
        def split(x):
            return x.unflatten(-1, (H, D)).transpose(1, 2)

        scores = binary_qk(split(t + self.q_shift.view(-1)), split(t + self.k_offset.view(N, H * D)))
        return scores, binary_av(levels, split(t + self.v_shift.view(-1)))


def test_head_splits_lower_to_packs_of_the_token_major_tensors():
    rng = np.random.default_rng(5)
    t = rng.standard_normal((B, N, H * D)).astype(np.float32)
    levels = rng.integers(0, 4, (B, H, N, N)).astype(np.float32)
    module = _Products().eval()
    inputs = (torch.from_numpy(t), torch.from_numpy(levels))
    mod = to_relax(torch.export.export(module, inputs), HOST)
    text = relax.transform.DeadCodeElimination()(mod).script()
    key = f"{B}x{H}x{N}x{D}"
    # q shifted in its pack; k packed from its sum with the offset, which stays an add of its own
    assert f"bpack_heads_rows_{key}_t," in text and f"bpack_heads_rows_{key}," in text and "R.add" in text
    assert f"bpack_heads_tokens_{key}_t," in text and "R.permute_dims" not in text  # no transposed copy is left
    vm = relax.VirtualMachine(tvm.compile(mod, target=HOST), tvm.cpu())
    scores, out = vm["main"](*(tvm.runtime.tensor(a) for a in (t, levels)))
    with torch.no_grad():
        expected_scores, expected_out = module(*inputs)
    np.testing.assert_array_equal(scores.numpy(), expected_scores.numpy())
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())
