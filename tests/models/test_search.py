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
        assert not any(o.cost.memory_mib < c.cost.memory_mib and o.cost.mops < c.cost.mops and o.macs > c.macs
                       for o in found)
