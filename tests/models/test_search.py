import pytest
from bhvit.models import ConfigError
from bhvit.models.search import Budget, pareto_front, parse_budget, search


def test_parse_budget_fp32_w1_is_the_fp32_models_cost():
    budget = parse_budget("fp32:w1")
    assert round(budget.memory_mib, 2) == 48.26 and round(budget.mops, 1) == 2548.8
    assert parse_budget("13.7:400") == Budget(13.7, 400.0, "13.7 MiB, 400 MOPs")
    with pytest.raises(ConfigError, match="fp32:w1"):
        parse_budget("cheap")


def test_search_lists_only_fitting_candidates_cheapest_first():
    budget = Budget(7.0, 200.0, "test")
    found = search(budget, widths=(1.0, 2.0, 3.0))
    assert found
    assert all(c.cost.memory_mib <= 7.0 and c.cost.mops <= 200.0 for c in found)
    assert [c.cost.mops for c in found] == sorted(c.cost.mops for c in found)
    keys = {(c.hidden_width, c.intermediate_width, c.variant) for c in found}
    assert (1.0, 1.0, "binary") in keys and (2.0, 2.0, "binary") in keys
    assert (3.0, 3.0, "binary") not in keys  # 13.68 MiB does not fit


def test_pareto_front_has_no_dominated_member():
    found = search(Budget(20.0, 500.0, "test"), widths=(1.0, 2.0, 3.0))
    front = pareto_front(found)
    assert 0 < len(front) < len(found)
    for c in front:
        assert not any(
            o.cost.memory_mib < c.cost.memory_mib and o.cost.mops < c.cost.mops and o.macs > c.macs for o in found
        )


def _bench_file(tmp_path, per_mflop=0.01, per_mbop=0.002, overhead=3.0):
    from bhvit.models import resolve_config
    from bhvit.models.cost import config_cost

    rows = [{"model": "ort-fp32-w1", "median_ms": 100.0}]
    for key, kw in (
        ("tvm-fp32-w1", {"precision": "fp32"}),
        ("tvm-binary-w1", {}),
        ("tvm-binary-w3", {"width": 3}),
        ("tvm-binary-w3-fpds", {"width": 3, "fp_downsample": True}),
    ):
        c = config_cost(resolve_config("bhvit_tiny", **kw))
        rows.append({"model": key, "median_ms": per_mflop * c.flops / 1e6 + per_mbop * c.bops / 1e6 + overhead})
    path = tmp_path / "bench.json"
    path.write_text(__import__("json").dumps(rows))
    return path


def test_latency_budget_fits_measured_models_and_filters_by_prediction(tmp_path):
    path = _bench_file(tmp_path)
    budget = parse_budget(f"latency:{path}")
    assert budget.latency_ms == 100.0 and "ORT FP32" in budget.label
    lm = budget.latency_model
    assert lm.ms_per_mflop == pytest.approx(0.01, rel=1e-6) and lm.ms_per_mbop == pytest.approx(0.002, rel=1e-6)
    assert lm.overhead_ms == pytest.approx(3.0, rel=1e-6)
    tight = parse_budget(f"latency:{path}:20")
    found = search(tight, widths=(1.0, 2.0, 3.0), variants=("binary",))
    assert found and all(tight.latency_model.predict(c.cost) <= 20 for c in found)
    assert len(found) < len(search(budget, widths=(1.0, 2.0, 3.0), variants=("binary",)))


def test_latency_budget_needs_enough_measured_models(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text('[{"model": "tvm-binary-w1", "median_ms": 20}]')
    with pytest.raises(ConfigError, match="at least 3"):
        parse_budget(f"latency:{path}:50")
    with pytest.raises(ConfigError, match="ort-fp32-w1"):
        parse_budget(f"latency:{path}")
