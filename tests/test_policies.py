"""The batch assignment policy: budget, capacity, infeasibility, and agreement with λ-argmax."""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import asdict

import numpy as np
import pytest

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.policies.argmax import decide as argmax_decide
from routerzoo.routers.policies.assignment import (
    AssignmentConfig,
    AssignmentPolicy,
    InfeasibleError,
    _cheapest_under_capacity,
)


def _names(m: int) -> list[str]:
    return [f"m{j}" for j in range(m)]


def _random(n: int, m: int, seed: int = 0, binary: bool = False):
    rng = np.random.default_rng(seed)
    q = np.clip(np.linspace(0.3, 0.9, m)[None, :] + rng.normal(0, 0.2, (n, m)), 0, 1)
    if binary:
        q = (q > 0.5).astype(float)
    price = np.sort(np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), m)))
    c = rng.lognormal(0, 0.5, n)[:, None] * price[None, :]
    return q, c


def _decide(q, c, **config) -> np.ndarray:
    return AssignmentPolicy(AssignmentConfig(**config)).decide(Prediction(q, c), _names(q.shape[1]))


def _brute_force(q, c, budget=None, caps=None) -> float:
    """Best total quality over every assignment (tiny problems only)."""
    n, m = q.shape
    best = -math.inf
    rows = np.arange(n)
    for choice in itertools.product(range(m), repeat=n):
        ch = np.array(choice)
        if budget is not None and c[rows, ch].sum() > budget:
            continue
        if caps is not None and (np.bincount(ch, minlength=m) > caps).any():
            continue
        best = max(best, float(q[rows, ch].sum()))
    return best


def _greedy(q, c, budget) -> np.ndarray:
    """The usual knapsack greedy: start at each prompt's cheapest model, then take upgrades in order of
    quality gained per USD while they fit the budget."""
    n, m = q.shape
    rows = np.arange(n)
    ch = c.argmin(axis=1)
    spent = c[rows, ch].sum()
    moves = [
        ((q[i, j] - q[i, ch[i]]) / (c[i, j] - c[i, ch[i]]), i, j)
        for i in range(n)
        for j in range(m)
        if q[i, j] > q[i, ch[i]] and c[i, j] > c[i, ch[i]]
    ]
    for _, i, j in sorted(moves, reverse=True):
        extra = c[i, j] - c[i, ch[i]]
        if q[i, j] > q[i, ch[i]] and spent + extra <= budget:
            spent += extra
            ch[i] = j
    return ch


# --------------------------------------------------------------------------------------------
# no constraints


@pytest.mark.parametrize("binary", [False, True])
def test_unconstrained_equals_argmax(binary):
    q, c = _random(300, 6, seed=1, binary=binary)
    got = _decide(q, c)
    np.testing.assert_array_equal(got, argmax_decide(q, c, 0.0))
    assert got.dtype.kind == "i"


def test_loose_constraints_keep_argmax():
    q, c = _random(100, 4, seed=2, binary=True)
    am = argmax_decide(q, c, 0.0)
    spent = c[np.arange(100), am].sum()
    got = _decide(q, c, budget=spent * 1.01, capacity={"m0": 1.0})
    np.testing.assert_array_equal(got, am)


def test_empty_batch():
    q = np.zeros((0, 3))
    out = _decide(q, q.copy(), budget=1.0, capacity={"m1": 0.5})
    assert out.shape == (0,) and out.dtype.kind == "i"


# --------------------------------------------------------------------------------------------
# budget


def test_budget_beats_greedy_on_a_knapsack_trap():
    # model 0 free and useless; prompt 0's upgrade has the better ratio (1/1 vs 9/10) but then prompt 1's
    # upgrade no longer fits: greedy gets 1, the optimum spends the whole budget on prompt 1 and gets 9
    q = np.array([[0.0, 1.0], [0.0, 9.0]])
    c = np.array([[0.0, 1.0], [0.0, 10.0]])
    greedy = _greedy(q, c, 10.0)
    assert q[np.arange(2), greedy].sum() == 1.0
    got = _decide(q, c, budget=10.0)
    np.testing.assert_array_equal(got, [0, 1])
    assert c[np.arange(2), got].sum() <= 10.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_budget_respected_and_optimal_on_small_problems(seed):
    q, c = _random(7, 3, seed=seed)
    rows = np.arange(7)
    lo, hi = c.min(axis=1).sum(), c[rows, argmax_decide(q, c, 0.0)].sum()
    budget = lo + 0.4 * (hi - lo)
    got = _decide(q, c, budget=budget)
    assert c[rows, got].sum() <= budget
    assert q[rows, got].sum() == pytest.approx(_brute_force(q, c, budget=budget), abs=1e-9)
    assert q[rows, got].sum() >= q[rows, _greedy(q, c, budget)].sum() - 1e-12


def test_budget_per_prompt_is_budget_times_n():
    q, c = _random(200, 5, seed=3)
    per = float(c.mean()) * 0.5
    a = _decide(q, c, budget_per_prompt=per)
    b = _decide(q, c, budget=per * 200)
    np.testing.assert_array_equal(a, b)
    assert c[np.arange(200), a].sum() <= per * 200


def test_budget_exactly_the_cheapest_assignment():
    q, c = _random(50, 4, seed=4)
    cheapest = float(c.min(axis=1).sum())
    got = _decide(q, c, budget=cheapest)
    assert c[np.arange(50), got].sum() <= cheapest
    np.testing.assert_array_equal(got, c.argmin(axis=1))


def test_large_batch_budget_and_capacity_hold_exactly():
    q, c = _random(600, 8, seed=5)
    rows = np.arange(600)
    lo, hi = c.min(axis=1).sum(), c[rows, argmax_decide(q, c, 0.0)].sum()
    budget = (lo + hi) / 2
    got = _decide(q, c, budget=budget, capacity={"m7": 0.1, "m6": 0.15})
    assert c[rows, got].sum() <= budget
    counts = np.bincount(got, minlength=8)
    assert counts[7] <= 60 and counts[6] <= 90
    # the budget alone: at least as good as the greedy baseline
    got = _decide(q, c, budget=budget)
    assert c[rows, got].sum() <= budget
    assert q[rows, got].sum() >= q[rows, _greedy(q, c, budget)].sum() - 1e-9


def test_infeasible_budget_says_by_how_much():
    q = np.array([[1.0, 0.5], [1.0, 0.5]])
    c = np.array([[3.0, 1.0], [3.0, 2.0]])  # cheapest assignment: 1 + 2 = 3
    with pytest.raises(InfeasibleError) as e:
        _decide(q, c, budget=2.5)
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert "2.5" in msg and "$3" in msg and "short by $0.5" in msg


# --------------------------------------------------------------------------------------------
# capacity


def test_capacity_shares_respected():
    rng = np.random.default_rng(6)
    n = 101
    q = rng.uniform(0, 0.5, (n, 4))
    q[:, 0] += 0.5  # m0 is the best everywhere: argmax would send it every prompt
    c = np.ones((n, 4))
    got = _decide(q, c, capacity={"m0": 0.2, "m1": 0.3})
    counts = np.bincount(got, minlength=4)
    assert counts[0] == math.floor(0.2 * n)  # filled to its cap: it is the best model
    assert counts[1] <= math.floor(0.3 * n)
    assert counts.sum() == n


def test_capacity_with_budget_optimal_on_small_problem():
    q, c = _random(6, 3, seed=7)
    caps = np.array([2, 6, 6])
    budget = float(np.sort(c, axis=1)[:, 1].sum())
    got = _decide(q, c, budget=budget, capacity={"m0": 2 / 6})
    rows = np.arange(6)
    assert np.bincount(got, minlength=3)[0] <= 2
    assert c[rows, got].sum() <= budget
    assert q[rows, got].sum() == pytest.approx(_brute_force(q, c, budget=budget, caps=caps), abs=1e-9)


def test_capacities_below_one_are_infeasible():
    q, c = _random(10, 2, seed=8)
    with pytest.raises(InfeasibleError, match=r"only 6 of 10 prompts \(short by 4\)"):
        _decide(q, c, capacity={"m0": 0.3, "m1": 0.3})


def test_budget_infeasible_only_under_capacity():
    # row minima sum to 0, but m0 may take only 2 of 4 prompts, so 2 go to m1 at $1 each
    q = np.ones((4, 2))
    c = np.array([[0.0, 1.0]] * 4)
    with pytest.raises(InfeasibleError) as e:
        _decide(q, c, budget=1.5, capacity={"m0": 0.5})
    msg = str(e.value)
    assert "meets the capacities" in msg and "$2" in msg and "short by $0.5" in msg


def test_unknown_capacity_model_lists_candidates():
    q, c = _random(5, 3)
    with pytest.raises(UserError, match=re.escape("['nope']") + ".*candidates: \\['m0', 'm1', 'm2'\\]"):
        _decide(q, c, capacity={"nope": 0.5})


def test_models_must_match_prediction_width():
    q, c = _random(5, 3)
    with pytest.raises(UserError):
        AssignmentPolicy(AssignmentConfig(budget=1.0)).decide(Prediction(q, c), ["a", "b"])


# --------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budget": 1.0, "budget_per_prompt": 0.1},
        {"budget": -1.0},
        {"budget": float("nan")},
        {"budget_per_prompt": float("inf")},
        {"capacity": {"a": 0.0}},
        {"capacity": {"a": 1.5}},
        {"capacity": {"": 0.5}},
        {"time_limit_s": 0.0},
        {"mip_rel_gap": 1.0},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        AssignmentConfig(**kwargs)


def test_config_round_trips_and_policy_to_dict():
    cfg = AssignmentConfig(budget_per_prompt=0.002, capacity={"gpt-4o": 0.25}, time_limit_s=5.0)
    assert AssignmentConfig(**asdict(cfg)) == cfg
    d = AssignmentPolicy(cfg).to_dict()
    assert d["kind"] == "assignment" and d["config"]["capacity"] == {"gpt-4o": 0.25}


# --------------------------------------------------------------------------------------------
# benchmark (deselected by default: pytest -m slow tests/test_policies.py -s)


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True])
def test_benchmark_2000_by_15(binary):
    q, c = _random(2000, 15, seed=0, binary=binary)
    rows = np.arange(2000)
    lo, hi = c.min(axis=1).sum(), c[rows, argmax_decide(q, c, 0.0)].sum()
    caps = {m: 0.1 for m in _names(15)}
    capped = c[rows, _decide(q, c, capacity=caps)].sum()
    floor = _cheapest_under_capacity(c, np.full(15, 200))
    both = {"budget": (floor + capped) / 2, "capacity": caps}
    for config in ({"budget": (lo + hi) / 2}, {"capacity": caps}, both):
        t = time.perf_counter()
        got = _decide(q, c, **config)
        dt = time.perf_counter() - t
        print(f"binary={binary} {sorted(config)}: {dt:.2f} s, total quality {q[rows, got].sum():.3f}")
        assert dt < 5.0
        if "budget" in config:
            assert c[rows, got].sum() <= config["budget"]
