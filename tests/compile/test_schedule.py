"""The generic CPU schedule keeps FP PrimFuncs correct and makes them parallel and vectorised."""

from __future__ import annotations

import platform

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

tvm = pytest.importorskip("tvm")


def _legalized(build):
    from tvm import relax

    bb = relax.BlockBuilder()
    with bb.function("main"):
        params, out = build(bb, relax)
        with bb.dataflow():
            gv = bb.emit_output(out(*params))
        bb.emit_func_output(gv, params)
    mod = relax.transform.LegalizeOps()(bb.get())
    return [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)][0]


CASES = {
    "matmul": lambda bb, r: (
        [r.Var("a", r.TensorType((56, 96), "float32")), r.Var("b", r.TensorType((96, 64), "float32"))],
        r.op.matmul,
    ),
    "conv2d": lambda bb, r: (
        [r.Var("x", r.TensorType((1, 16, 14, 14), "float32")), r.Var("w", r.TensorType((32, 4, 3, 3), "float32"))],
        lambda x, w: r.op.nn.conv2d(x, w, padding=2, dilation=2, groups=4),
    ),
    "maxpool": lambda bb, r: (
        [r.Var("x", r.TensorType((1, 8, 14, 14), "float32"))],
        lambda x: r.op.nn.max_pool2d(x, 7, 7, 3),
    ),
    "mean": lambda bb, r: ([r.Var("x", r.TensorType((2, 49, 64), "float32"))], lambda x: r.op.mean(x, axis=1)),
    "softmax": lambda bb, r: ([r.Var("x", r.TensorType((4, 53, 53), "float32"))], lambda x: r.op.nn.softmax(x)),
    # 64 wide: the max and the sum take the vector-lane path, with the exponentials kept between them
    "softmax_lanes": lambda bb, r: (
        [r.Var("x", r.TensorType((3, 5, 64), "float32"))],
        lambda x: r.op.nn.softmax(x),
    ),
    "layer_norm": lambda bb, r: (
        [r.Var(n, r.TensorType(s, "float32")) for n, s in (("x", (3, 7, 96)), ("g", (96,)), ("b", (96,)))],
        lambda x, g, b: r.op.nn.layer_norm(x, g, b, axes=[-1]),
    ),
    "max_last": lambda bb, r: ([r.Var("x", r.TensorType((5, 3, 40), "float32"))], lambda x: r.op.max(x, axis=-1)),
    "add": lambda bb, r: (
        [r.Var("x", r.TensorType((1, 64, 56, 56), "float32")), r.Var("y", r.TensorType((1, 64, 1, 1), "float32"))],
        r.op.add,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_generic_schedule_is_correct_and_parallel(case):
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    func = _legalized(CASES[case])
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16))
    assert scheduled.attrs["tirx.is_scheduled"]
    text = scheduled.script()
    assert "T.parallel" in text
    target = tvm.target.Target("llvm")
    rng = np.random.default_rng(0)
    shapes = [[int(s) for s in p.shape] for p in func.params]
    inputs = [rng.standard_normal(shape).astype("float32") for shape in shapes[:-1]]
    outs = []
    for f in (func, scheduled):
        lib = tvm.tirx.build(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=target)
        tensors = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.empty(shapes[-1], "float32")]
        lib["main"](*tensors)
        outs.append(tensors[-1].numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "case, lanes", [("layer_norm", 16), ("max_last", 8), ("softmax_lanes", 16), ("softmax", None), ("mean", None)]
)
def test_contiguous_row_reductions_accumulate_in_vector_lanes(case, lanes):
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    func = _legalized(CASES[case])
    text = schedule_primfunc(func, CpuScheduleCfg(lanes=16)).script()
    if lanes is None:  # softmax: 53 wide, no lane count divides it; mean over axis 1: not the contiguous axis
        assert "_rf" not in text
        return
    # every reduction got its partial-result lanes, and a vector loop of that width holds each update
    assert text.count('_rf_update"') == func.script().count("T.init()") >= 1
    assert text.count(f"in T.vectorized(T.int64({lanes})):\n") >= 2 * text.count('_rf_update"')


def test_row_reductions_no_lane_count_divides_run_one_row_per_lane():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    func = _legalized(CASES["softmax"])  # (4, 53, 53): 212 rows of 53, which neither 16 nor 8 lanes divide
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16))
    # the row max and the row sum: 4 rows at a time, one per lane, each reduced over its 53 values in order
    assert _loop_nests(scheduled).count([("PARALLEL", 53), ("SERIAL", 53), ("VECTORIZED", 4)]) == 2
    x = np.random.default_rng(3).standard_normal((4, 53, 53)).astype("float32")
    np.testing.assert_array_equal(_run(scheduled, x), _run(func, x))


def test_a_producer_read_by_a_reduction_and_another_block_is_computed_once():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    # softmax's exponentials feed the row sum and the normalisation: kept as a vectorised block of their own
    text = schedule_primfunc(_legalized(CASES["softmax"]), CpuScheduleCfg(lanes=16)).script()
    assert text.count("T.exp(") == 1
    exp_block = text.split('T.sblock("T_softmax_exp")')[0].rsplit("for ", 1)[-1]
    assert "T.vectorized" in exp_block


def _roll_w(r, x, shift: int, w: int):
    """``torch.roll(x, shift, 3)`` of a map ``w`` wide as the exported graphs have it: two slices and a concat."""
    cut = w - shift % w
    return r.op.concat([r.op.strided_slice(x, [3], [cut], [w]), r.op.strided_slice(x, [3], [0], [cut])], axis=3)


def test_circular_shifts_along_the_vector_axis_are_partitioned_into_vector_pieces():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 56), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            shifted = bb.emit(relax.op.add(_roll_w(relax, x, 1, 56), _roll_w(relax, x, -2, 56)))
            gv = bb.emit_output(relax.op.add(x, shifted))
        bb.emit_func_output(gv)
    fuse = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps()]
    mod = tvm.transform.Sequential([*fuse, relax.transform.FuseTIR()])(bb.get())
    (func,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16))
    text = scheduled.script()
    # wraps at w < 1 (roll by 1) and w >= 54 (roll by -2): pieces [0, 1), [1, 54) and [54, 56)
    assert "T.vectorized(T.int64(1), T.int64(54))" in text and "T.vectorized(T.int64(54), T.int64(56))" in text
    lib = tvm.tirx.build(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target="llvm")
    a = np.random.default_rng(0).standard_normal((1, 8, 6, 56)).astype("float32")
    out = tvm.runtime.empty(a.shape, "float32")
    lib["main"](tvm.runtime.tensor(a), out)
    np.testing.assert_allclose(out.numpy(), a + np.roll(a, 1, 3) + np.roll(a, -2, 3), rtol=1e-6, atol=1e-6)


def test_pass_returns_a_new_module_and_leaves_its_input_alone():
    from bhvit.compile.schedule import CpuScheduleCfg, GenericCpuSchedule

    mod = tvm.IRModule({"f": _legalized(CASES["matmul"])})
    before = mod.script()
    out = GenericCpuSchedule(CpuScheduleCfg())(mod)
    assert mod.script() == before and "tirx.is_scheduled" not in (mod["f"].attrs or {})
    assert out["f"].attrs["tirx.is_scheduled"] and "T.parallel" in out["f"].script()


def test_a_block_left_serial_is_named_in_a_warning(caplog):
    from bhvit.compile.schedule import CpuScheduleCfg, GenericCpuSchedule

    # a sum over every axis: no spatial axis to parallelise, so the generic schedule has no rule for it
    func = _legalized(lambda bb, r: ([r.Var("x", r.TensorType((64, 64), "float32"))], r.op.sum))
    block = func.script().split('T.sblock("')[-1].split('"')[0]
    schedule = GenericCpuSchedule(CpuScheduleCfg())
    with caplog.at_level("WARNING", logger="bhvit.compile.schedule"):
        schedule(tvm.IRModule({"total": func}))
    assert schedule.serial == [f"total/{block}"]
    assert f"total: block {block} left serial" in caplog.text


@pytest.mark.parametrize("precision", ["binary", "fp32"])
def test_no_block_of_a_bhvit_graph_is_left_serial(precision):
    from bhvit.compile import pipeline
    from bhvit.compile.lower import lower
    from bhvit.compile.schedule import GenericCpuSchedule
    from bhvit.compile.source import random_init
    from bhvit.compile.targets import resolve_target

    spec = resolve_target("host", check_tools=False)
    source = random_init("test_bhvit", precision=precision)
    target = spec.tvm_target()
    with target:
        passes = pipeline.passes(target)
        at = next(i for i, p in enumerate(passes) if isinstance(p, GenericCpuSchedule))
        fused = tvm.transform.Sequential(passes[:at])(lower(source.model, spec, source.input_shape))
        passes[at](fused)
    assert passes[at].serial == []


def test_opaque_kernels_are_left_alone():
    from bhvit.compile.schedule import CpuScheduleCfg, GenericCpuSchedule

    func = _legalized(CASES["add"]).with_attr("op_pattern", 8)
    mod = GenericCpuSchedule(CpuScheduleCfg())(tvm.IRModule({"k": func}))
    assert "T.parallel" not in mod["k"].script() and "tirx.is_scheduled" not in (mod["k"].attrs or {})


@pytest.mark.parametrize(
    "name, lanes", [("znver4", 16), ("x86-64-v4", 16), ("x86-64-v3", 8), ("x86-64", 4), ("rpi5", 4), ("rpi4", 4)]
)
def test_vector_lanes_follow_target_features(name, lanes):
    from bhvit.compile.schedule import cpu_schedule_cfg
    from bhvit.compile.targets import resolve_target

    assert cpu_schedule_cfg(resolve_target(name, check_tools=False).tvm_target()).lanes == lanes


@pytest.mark.skipif(platform.machine() != "x86_64", reason="target 'host' is x86-64 only")
def test_host_gets_the_lanes_of_its_detected_variant():
    from bhvit.compile.schedule import cpu_schedule_cfg
    from bhvit.compile.targets import resolve_target

    host = resolve_target("host", check_tools=False)
    assert cpu_schedule_cfg(host.tvm_target()) == cpu_schedule_cfg(resolve_target(host.detected).tvm_target())


def _fused(build_body, *params):
    """The one fused PrimFunc of a Relax function of ``params`` whose body ``build_body(bb, *vars)`` emits."""
    from tvm import relax

    bb = relax.BlockBuilder()
    with bb.function("main", list(params)):
        with bb.dataflow():
            gv = bb.emit_output(build_body(bb, *params))
        bb.emit_func_output(gv)
    fuse = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FuseOps()]
    mod = tvm.transform.Sequential([*fuse, relax.transform.FuseTIR()])(bb.get())
    (func,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    return func


def _tokens_to_map(r, tokens, c: int, h: int, w: int):
    """``(h*w, c)`` tokens into a ``(1, c, h, w)`` map, as ``tokens_to_map`` exports."""
    return r.op.reshape(r.op.permute_dims(r.op.reshape(tokens, (1, h, w, c)), [0, 3, 1, 2]), (1, c, h, w))


def _loop_nests(func) -> list[list[tuple[str, int]]]:
    """Per innermost block of ``func``: the loops around it outermost first, as ``(kind, extent)``."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    nests = []

    def visit(parent, outer):
        for block in sch.get_child_blocks(parent):
            loops = [
                *outer,
                *((tvm.tirx.ForKind(sch.get(lp).kind).name, int(sch.get(lp).extent)) for lp in sch.get_loops(block)),
            ]
            if not sch.get_child_blocks(block):
                nests.append(loops)
            visit(block, loops)

    visit(sch.get_sblock("root"), [])
    return nests


def _run(func, *inputs):
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
    out = tvm.runtime.empty([int(s) for s in func.params[-1].shape], "float32")
    lib["main"](*(tvm.runtime.tensor(a) for a in inputs), out)
    return out.numpy()


@pytest.mark.parametrize("c, h, w, tile", [(48, 6, 7, 16), (40, 5, 9, 10), (12, 11, 7, 12)])
def test_a_transposed_read_is_tiled_by_cache_lines(c, h, w, tile):
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc
    from tvm import relax

    tokens = relax.Var("t", relax.TensorType((h * w, c), "float32"))
    scale = relax.Var("s", relax.TensorType((c,), "float32"))
    res = relax.Var("r", relax.TensorType((1, c, h, w), "float32"))
    func = _fused(lambda bb, t, s, r: relax.op.add(_tokens_to_map(relax, t * s, c, h, w), r), tokens, scale, res)
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16, min_parallel=1))
    # channels split by a cache line's 16 floats (or the largest divisor of c up to 16), the channel tile inside
    # the parallel (channel tiles x rows) loop and outside the vector loop along the row
    assert _loop_nests(scheduled) == [[("PARALLEL", c // tile * h), ("SERIAL", tile), ("VECTORIZED", w)]]
    rng = np.random.default_rng(1)
    t, s, r = (rng.standard_normal([int(d) for d in p.shape]).astype("float32") for p in func.params[:-1])
    np.testing.assert_array_equal(_run(scheduled, t, s, r), _run(func, t, s, r))
    np.testing.assert_allclose(_run(scheduled, t, s, r), (t * s).T.reshape(1, c, h, w) + r, rtol=1e-6)


def test_a_transposed_read_with_a_circular_shift_is_tiled_and_partitioned():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc
    from tvm import relax

    c, h, w = 24, 5, 13
    tokens = relax.Var("t", relax.TensorType((h * w, c), "float32"))
    x = relax.Var("x", relax.TensorType((1, c, h, w), "float32"))

    def body(bb, t, x):
        return relax.op.add(_tokens_to_map(relax, t, c, h, w), relax.op.add(x, _roll_w(relax, x, 2, w)))

    func = _fused(body, tokens, x)
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16, min_parallel=1))
    # the row wraps at w = 2: pieces [0, 2) and [2, 13), both vectorised inside the tile of 12 channels
    assert _loop_nests(scheduled) == [
        [("PARALLEL", 2 * h), ("SERIAL", 12), ("VECTORIZED", 2)],
        [("PARALLEL", 2 * h), ("SERIAL", 12), ("VECTORIZED", 11)],
    ]
    rng = np.random.default_rng(2)
    t, a = (rng.standard_normal([int(d) for d in p.shape]).astype("float32") for p in func.params[:-1])
    np.testing.assert_array_equal(_run(scheduled, t, a), _run(func, t, a))
    np.testing.assert_allclose(_run(scheduled, t, a), t.T.reshape(1, c, h, w) + (a + np.roll(a, 2, 3)), rtol=1e-6)


def test_tokens_read_from_a_map_with_many_channels_are_tiled_in_both_axes():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc
    from tvm import relax

    m = relax.Var("m", relax.TensorType((1, 96, 5, 7), "float32"))
    to_tokens = _fused(lambda bb, m: relax.op.permute_dims(relax.op.reshape(m, (96, 35)), [1, 0]), m)
    scheduled = schedule_primfunc(to_tokens, CpuScheduleCfg(lanes=16, min_parallel=1))
    # tokens split by 7 (the largest divisor of 35 up to a line's 16 floats), channels by 32 (two vectors)
    assert _loop_nests(scheduled) == [[("PARALLEL", 5 * 3), ("SERIAL", 7), ("SERIAL", 2), ("VECTORIZED", 16)]]
    a = np.random.default_rng(5).standard_normal((1, 96, 5, 7)).astype("float32")
    np.testing.assert_array_equal(_run(scheduled, a), a.reshape(96, 35).T)


def test_reads_along_the_output_rows_are_not_tiled():
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    add = _legalized(CASES["add"])
    cfg = CpuScheduleCfg(lanes=16, min_parallel=1)
    assert _loop_nests(schedule_primfunc(add, cfg)) == [[("PARALLEL", 64 * 56), ("VECTORIZED", 56)]]


@pytest.mark.parametrize("tokens, rows, per_line", [(64, 16, 1), (36, 4, 3), (196, 4, 1)])
def test_tokens_read_from_a_map_are_transposed_in_registers(tokens, rows, per_line):
    """Map -> tokens with as many tokens as a power of two up to the lanes divides: tiles of that many tokens x one
    vector of channels, the token loop marked for the register transpose (see test_register_transpose), the tiles
    of one cache line of the map consecutive; bit-identical once built with the pass."""
    from bhvit.compile.kernels.schedule.register_transpose import ANNOTATION, PIPELINE
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc
    from tvm import relax

    m = relax.Var("m", relax.TensorType((1, 32, tokens), "float32"))
    to_tokens = _fused(lambda bb, m: relax.op.permute_dims(relax.op.reshape(m, (32, tokens)), [1, 0]), m)
    scheduled = schedule_primfunc(to_tokens, CpuScheduleCfg(lanes=16, min_parallel=1))
    assert _loop_nests(scheduled) == [
        [
            ("PARALLEL", tokens // (rows * per_line)),
            ("SERIAL", per_line),
            ("SERIAL", 2),
            ("SERIAL", rows),
            ("VECTORIZED", 16),
        ]
    ]
    assert ANNOTATION in scheduled.script()
    a = np.random.default_rng(tokens).standard_normal((1, 32, tokens)).astype("float32")
    lib = tvm.tirx.build(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), "llvm", PIPELINE)
    out = tvm.runtime.empty((tokens, 32), "float32")
    lib["main"](tvm.runtime.tensor(a), out)
    np.testing.assert_array_equal(out.numpy(), a[0].T)
    # built for AVX-512 without the pass, the same function inserts each vector's lanes one by one
    znver4 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    module = tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")})
    plain, shuffled = (tvm.tirx.build(module, znver4, p).inspect_source("asm") for p in ("default", PIPELINE))
    assert "vinsertps" in plain and "vinsertps" not in shuffled


@pytest.mark.parametrize("rows, nest", [(16, [("PARALLEL", 16), ("SERIAL", 3)]), (2, [("PARALLEL", 2 * 3)])])
def test_the_vectors_of_a_row_are_parallel_only_when_the_rows_are_few(rows, nest):
    from bhvit.compile.schedule import CpuScheduleCfg, schedule_primfunc

    func = _legalized(
        lambda bb, r: (
            [r.Var("x", r.TensorType((rows, 48), "float32")), r.Var("y", r.TensorType((48,), "float32"))],
            r.op.add,
        )
    )
    scheduled = schedule_primfunc(func, CpuScheduleCfg(lanes=16, min_parallel=1, min_parallel_tasks=16))
    assert _loop_nests(scheduled) == [[*nest, ("VECTORIZED", 16)]]
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((rows, 48)).astype("float32"), rng.standard_normal(48).astype("float32")
    np.testing.assert_array_equal(_run(scheduled, x, y), x + y)
