"""The Relax pass list (compile/pipeline.py) beyond TVM's CPU pipeline."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")


def test_a_tensor_reshaped_for_two_consumers_is_reshaped_once():
    """The importer reshapes per consumer; each reshape left is a VM builtin call on every run."""
    from bhvit.compile import pipeline
    from bhvit.compile.kernels.relax_emit import OPAQUE
    from bhvit.compile.targets import resolve_target
    from tvm import relax, te

    src = te.placeholder((32,), "float32", name="src")
    kernel = te.create_prim_func([src, te.compute((32,), lambda i: src[i] * 2.0, name="out")])
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((4, 8), "float32"))
    with bb.function("main", [x]):
        # an opaque kernel, as the binary ones: FuseOps leaves the reshapes before it
        gv = bb.add_func(kernel.without_attr("global_symbol").with_attr("op_pattern", OPAQUE), "kernel")
        with bb.dataflow():
            outs = [
                bb.emit(
                    relax.call_tir(gv, [bb.emit(relax.op.reshape(x, (32,)))], out_ty=relax.TensorType((32,), "float32"))
                )
                for _ in range(2)
            ]
            out = bb.emit_output(relax.op.add(*outs))
        bb.emit_func_output(out)
    target = resolve_target("host", check_tools=False).tvm_target()
    with target:
        lowered = tvm.transform.Sequential(pipeline.passes(target))(bb.get())
    script = lowered["main"].script()
    assert script.count("R.reshape(") + script.count("vm.builtin.reshape") == 1, script
