"""Forgetting metrics on constructed numbers (known McNemar p-values, bootstrap, FG)."""

from __future__ import annotations

import math

from selfaug_compiler.evaluate.forgetting import (
    compare,
    compare_items,
    continual_forgetting,
    mcnemar_exact,
    paired_bootstrap_ci,
)


def pairs(both_right: int, b: int, c: int, both_wrong: int) -> tuple[list[int], list[int]]:
    before = [1] * both_right + [1] * b + [0] * c + [0] * both_wrong
    after = [1] * both_right + [0] * b + [1] * c + [0] * both_wrong
    return before, after


def test_mcnemar_b10_c0_is_two_times_half_to_the_tenth():
    before, after = pairs(50, 10, 0, 40)
    test = mcnemar_exact(before, after)
    assert (test.b, test.c) == (10, 0)
    assert math.isclose(test.p_value, 2 * 0.5 ** 10)  # 0.001953125


def test_mcnemar_known_values():
    # b=5, c=1: 2 * P[X<=1], X~Bin(6, 1/2) = 2 * 7/64
    assert math.isclose(mcnemar_exact(*pairs(0, 5, 1, 0)).p_value, 14 / 64)
    # balanced discordance: p = 1 (capped)
    assert mcnemar_exact(*pairs(3, 4, 4, 3)).p_value == 1.0
    # no discordant pairs at all
    assert mcnemar_exact(*pairs(10, 0, 0, 10)).p_value == 1.0


def test_compare_points_drops_and_significance():
    before, after = pairs(50, 10, 0, 40)  # 60% -> 50%
    cmp = compare(before, after, chance=0.25, seed=1)
    assert cmp.n == 100
    assert math.isclose(cmp.before, 60.0) and math.isclose(cmp.after, 50.0)
    assert math.isclose(cmp.delta, -10.0)
    assert math.isclose(cmp.relative_drop_pct, 100 * 10 / 60)
    assert math.isclose(cmp.normalized_drop, 0.10 / 0.35)
    assert cmp.significant and cmp.p_value < 0.01
    assert cmp.ci_high < 0  # every resample loses items, none gains
    noisy = compare(*pairs(50, 3, 2, 45), chance=0.25)
    assert not noisy.significant and noisy.p_value == 1.0


def test_normalized_drop_undefined_at_chance():
    cmp = compare([1, 0, 0, 0], [0, 0, 0, 0], chance=0.25)
    assert cmp.normalized_drop is None
    assert math.isclose(cmp.relative_drop_pct, 100.0)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    before = [0.2, 0.4, 0.5, 0.9, 0.1, 0.3, 0.8, 0.6]
    after = [0.3, 0.5, 0.4, 1.0, 0.3, 0.2, 0.9, 0.9]
    a = paired_bootstrap_ci(before, after, seed=7)
    assert a == paired_bootstrap_ci(before, after, seed=7)
    mean = sum(y - x for x, y in zip(before, after)) / len(before)
    assert a[0] <= mean <= a[1]
    cmp = compare(before, after)
    assert cmp.mcnemar is None and cmp.p_value is None  # not binary: the CI decides
    assert cmp.significant == (cmp.ci_low > 0 or cmp.ci_high < 0)


def test_compare_items_aligns_by_id():
    before = {"a": 1, "b": 1, "c": 0, "only_before": 1}
    after = {"c": 1, "b": 0, "a": 1, "only_after": 0}
    cmp = compare_items(before, after)
    assert cmp.n == 3
    assert (cmp.mcnemar.b, cmp.mcnemar.c) == (1, 1)


def test_continual_forgetting_luo_formula():
    r0 = {"x": 0.50, "y": 0.80}
    stages = [{"x": 0.40, "y": 0.80}, {"x": 0.25, "y": 0.60}]
    # terms: (0.1/0.5, 0, 0.25/0.5, 0.2/0.8) * 100 -> 20, 0, 50, 25 -> mean 23.75
    assert math.isclose(continual_forgetting(r0, stages), 23.75)
    assert continual_forgetting({"z": 0.0}, [{"z": 0.1}]) is None

