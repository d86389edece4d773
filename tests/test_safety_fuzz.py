"""Property-based checks of the surfaces where a wrong input used to give a silent wrong answer or a
library traceback (issue 18): calibration targets, batch-assignment budgets, registry names and
aliases, and ``--trainer.*`` flags.

For every generated input the outcome is either a result that honours what was asked, or one
:class:`~routerzoo.errors.UserError` on one line that names the flag, never another exception:

* calibrate: a target met on the calibration prompts (cost: spent at most the target; share:
  within the shares the grid reaches; quality: reached, at the lowest cost), or ``TargetMissed``;
  with ``allow_miss`` the nearest point, never an exception;
* assign: total predicted cost within the budget and every capacity kept, or ``InfeasibleError``;
* zoo names and aliases: accepted exactly when MLflow's own validators accept them (and the name
  has none of "@" and quotes, which routerzoo's references and filters need);
* trainer flags: accepted, or refused naming the flag.

Examples per run (derandomised): calibrate targets 50 + target flags 80, assign 60, names 150 +
aliases 150, trainer flags 150 = 640; about 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routerzoo.errors import ConfigError, UserError
from routerzoo.training.calibrate import Target, TargetMissed, parse_target, pick, sweep

FAST = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
MODELS = ["a", "b", "c", "d"]


def _one_line(exc: Exception) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


# -- calibrate targets ----------------------------------------------------------------------------------
@st.composite
def calibration_problems(draw):
    n = draw(st.integers(3, 30))
    m = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    tq = (rng.random((n, m)) < rng.random(m)).astype(float)
    base = np.sort(10 ** rng.uniform(-6, -2, m))
    tc = base[None, :] * (1 + 0.3 * rng.random((n, m)))
    pq = np.clip(0.6 * tq + 0.4 * rng.random((n, m)), 0, 1)
    pc = tc * (1 + 0.2 * rng.standard_normal((n, m))).clip(0.5, 2)
    kind = draw(st.sampled_from(["cost", "share", "quality"]))
    if kind == "cost":
        value = draw(st.floats(1e-9, 1e-1))
        target = Target("cost", value)
    elif kind == "share":
        target = Target("share", draw(st.floats(0, 1)), MODELS[draw(st.integers(0, m - 1))])
    else:
        target = Target("quality", draw(st.floats(0, 1)))
    return pq, pc, tq, tc, MODELS[:m], target


@settings(max_examples=50, **FAST)
@given(calibration_problems(), st.booleans())
def test_calibration_target_is_met_or_refused_never_silently_missed(problem, allow_miss):
    pq, pc, tq, tc, models, target = problem
    s = sweep(pq, pc, tq, tc, models, target)
    lo, hi = s.reachable
    try:
        best, missed = pick(s, target, allow_miss=allow_miss)
    except TargetMissed as exc:
        assert not allow_miss
        assert f"--target-{target.metric}" in _one_line(exc)
        # refused only when no grid point meets it
        if target.metric == "quality":
            assert hi < target.value
        elif target.metric == "cost":
            assert target.value < lo
        else:
            assert not lo <= target.value <= hi
        return
    fig = s.figures[best]
    if not missed:
        if target.metric == "quality":
            assert fig >= target.value - 1e-12
            # the cheapest grid point that meets it
            assert s.costs[best] <= s.costs[s.figures >= target.value - 1e-12].min() + 1e-15
        elif target.metric == "cost":
            assert target.value >= lo * (1 - 1e-9)
        else:
            assert lo - 1e-9 <= target.value <= hi + 1e-9
    else:
        assert allow_miss
        if target.metric == "quality":
            assert fig == pytest.approx(hi)
        else:  # the nearest point
            assert abs(fig - target.value) <= np.abs(s.figures - target.value).min() + 1e-15


@settings(max_examples=80, **FAST)
@given(st.sampled_from(["cost", "quality", "share"]),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12)))
def test_target_flags_parse_or_name_the_flag(kind, value):
    args = argparse.Namespace(target_cost=None, target_quality=None, target_share=None)
    if kind == "share":
        args.target_share = f"a={value}" if isinstance(value, float) else value
    elif isinstance(value, float):
        setattr(args, f"target_{kind}", value)
    else:
        return  # argparse's type=float refuses text for these
    try:
        target = parse_target(args)
    except UserError as exc:
        assert f"--target-{kind}" in _one_line(exc)
        return
    assert math.isfinite(target.value)
    if kind == "cost":
        assert target.value > 0
    else:
        assert 0 <= target.value <= 1


# -- assign budgets -----------------------------------------------------------------------------------------
class _StubRouter:
    """Just enough of a router for :func:`routerzoo.assign.assign`: fixed predictions."""

    def __init__(self, q, c, models):
        from routerzoo.routers.core.prediction import Prediction

        self._pred = Prediction(q, c)
        self.models = models

    def predict(self, prompts):
        return self._pred


@settings(max_examples=60, **FAST)
@given(st.integers(2, 25), st.integers(2, 4), st.integers(0, 2**31 - 1), st.floats(0, 2), st.floats(0, 1),
       st.booleans(), st.floats(0, 1e4))
def test_assignment_keeps_budget_and_capacity_or_is_infeasible(n, m, seed, budget_scale, cap, use_cap, lam):
    from routerzoo.assign import assign

    rng = np.random.default_rng(seed)
    models = MODELS[:m]
    q = rng.random((n, m))
    c = np.sort(10 ** rng.uniform(-5, -2, m))[None, :] * (1 + 0.3 * rng.random((n, m)))
    budget = float(budget_scale * c.max(axis=1).sum())
    capacity = {models[-1]: cap} if use_cap and cap > 0 else None
    try:
        choice, pred = assign(_StubRouter(q, c, models), [f"p{i}" for i in range(n)], budget, capacity, cost_weight=lam,
                              time_limit_s=5)
    except UserError as exc:
        _one_line(exc)
        # infeasible only if even the cheapest model everywhere breaks the budget, or the cap forbids it
        cheapest = c.min(axis=1).sum()
        assert cheapest > budget - 1e-12 or capacity is not None
        return
    rows = np.arange(n)
    assert c[rows, choice].sum() <= budget * (1 + 1e-6) + 1e-12
    if capacity:
        assert np.sum(choice == m - 1) <= math.floor(cap * n) + 1e-9


# -- registry names and aliases -----------------------------------------------------------------------------
_NAMEISH = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from("ab-_./:@' 1V\t\n"), max_size=8),
    st.sampled_from(["latest", "LATEST", "v1", "V22", "champion", "a/b", "..", ".", " x", "x ", "", "ok-name_1.2"]),
)


def _mlflow_accepts(validate, value) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        validate(value)
        return True
    except MlflowException:
        return False


@settings(max_examples=150, **FAST)
@given(_NAMEISH)
def test_model_names_accepted_only_when_mlflow_and_routerzoo_can_use_them(name):
    from mlflow.utils.validation import _validate_model_name

    from routerzoo.zoo.registry_ops import check_model_name

    try:
        check_model_name(name, "--name")
        ok = True
    except UserError as exc:
        assert _one_line(exc).startswith("--name")
        ok = False
    if ok:  # never pass on a name MLflow would refuse mid-registration
        assert _mlflow_accepts(_validate_model_name, name) and not set(name) & set("@'\"")


@settings(max_examples=150, **FAST)
@given(_NAMEISH)
def test_aliases_accepted_exactly_when_mlflow_accepts_them(alias):
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    from routerzoo.zoo.registry_ops import check_alias

    try:
        check_alias(alias, "--alias")
        ok = True
    except UserError as exc:
        assert _one_line(exc).startswith("--alias")
        ok = False
    mlflow_ok = _mlflow_accepts(_validate_model_alias_name, alias) and _mlflow_accepts(_validate_model_alias_name_reserved, alias)
    # MLflow's pattern ends in "$", which also matches before a final newline; routerzoo refuses that too
    assert ok == (mlflow_ok and "\n" not in alias), (alias, ok, mlflow_ok)


# -- trainer flags ------------------------------------------------------------------------------------------
_FLAG = st.one_of(st.none(), st.integers(-3, 9), st.text(max_size=10),
                  st.sampled_from(["auto", "0,1", "1", "-1", "32-true", "bf16-mixed", "ddp", "fsdp", "ddp_spawn",
                                   "ddp_find_unused_parameters_true", "deepspeed_stage_2", "cuda", "cpu"]))


@settings(max_examples=150, **FAST)
@given(_FLAG, _FLAG, _FLAG, _FLAG)
def test_trainer_flags_are_accepted_or_refused_naming_the_flag(accelerator, devices, strategy, precision):
    from routerzoo.training.trainer_config import PRECISIONS, TrainerConfig, _strategy_ok

    as_str = lambda v: None if v is None else str(v)  # noqa: E731  (jsonargparse gives these as text)
    try:
        cfg = TrainerConfig(accelerator=as_str(accelerator), devices=devices, strategy=as_str(strategy),
                            precision=as_str(precision))
    except ConfigError as exc:
        assert _one_line(exc).startswith("--trainer.")
        return
    assert cfg.accelerator in (None, "auto", "cpu", "gpu", "cuda", "mps")
    assert cfg.precision is None or cfg.precision in PRECISIONS
    assert cfg.strategy is None or _strategy_ok(cfg.strategy)
    if isinstance(cfg.devices, int):
        assert cfg.devices >= 1 or cfg.devices == -1
