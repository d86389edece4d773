"""The promotion gate that knows noise: a paired bootstrap on the same prompts (pure numpy), wired into
`routerzoo zoo promote --if-better-than --min-improvement --confidence`, and the warning of a plain
promote onto a version that is worse on its recorded metric."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routerzoo.errors import UserError
from routerzoo.zoo.gate import Scored, paired_bootstrap

COST = np.array([1.0, 1.0, 10.0])  # two cheap specialists and one expensive generalist


def _truth(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, size=n)
    q = np.empty((n, 3))
    q[:, 0] = rng.random(n) < np.where(topic == 0, 0.9, 0.1)
    q[:, 1] = rng.random(n) < np.where(topic == 1, 0.9, 0.1)
    q[:, 2] = rng.random(n) < 0.92
    return q, np.broadcast_to(COST, (n, 3)).copy()


def _scored(pred: np.ndarray, q: np.ndarray, c: np.ndarray) -> Scored:
    return Scored(pred, COST, q, c)


def test_a_clearly_better_router_passes_and_identical_ones_do_not():
    q, c = _truth(300)
    oracle_like = _scored(q + 0.01, q, c)  # knows each prompt's outcome
    blind = _scored(np.tile(q.mean(axis=0), (len(q), 1)), q, c)  # one prediction for every prompt
    res = paired_bootstrap(oracle_like, blind, "gap_closed", n_boot=300)
    assert res.delta > 0.5 and res.ci[0] > 0.3 and res.ci[0] <= res.delta <= res.ci[1]
    assert res.better and res.n_prompts == 300
    assert "paired CI [" in res.describe()
    # the same router against itself: every resample's difference is exactly zero, so no promotion
    same = paired_bootstrap(blind, blind, "gap_closed", n_boot=200)
    assert same.delta == 0.0 and same.ci == (0.0, 0.0) and not same.better
    # reversed roles: refused, the interval lies below zero
    rev = paired_bootstrap(blind, oracle_like, "aiq", n_boot=200)
    assert rev.ci[1] < 0 and not rev.better


def test_a_small_edge_on_few_prompts_is_noise_and_min_improvement_raises_the_bar():
    """Two routers that differ on a handful of prompts: a positive point difference, but an interval
    that straddles zero, so the gate refuses where a two-number comparison would promote."""
    q, c = _truth(60)
    base = q + np.random.default_rng(0).normal(0, 0.6, size=q.shape)  # a decent, noisy router
    tweak = base.copy()
    tweak[:6] = q[:6] + 0.01  # the candidate is the same router, right on six more prompts
    cand, inc = _scored(tweak, q, c), _scored(base, q, c)
    res = paired_bootstrap(cand, inc, "gap_closed", n_boot=500, seed=1)
    assert res.delta > 0, res.describe()
    assert res.ci[0] < 0 < res.ci[1] and not res.better, res.describe()
    # the interval is a function of the seed only: the same call gives the same numbers
    assert paired_bootstrap(cand, inc, "gap_closed", n_boot=500, seed=1).ci == res.ci
    # a lower confidence narrows the interval
    narrow = paired_bootstrap(cand, inc, "gap_closed", n_boot=500, seed=1, confidence=0.5)
    assert res.ci[0] <= narrow.ci[0] and narrow.ci[1] <= res.ci[1]
    # a clear winner still fails a bar above its own lower bound
    strong = paired_bootstrap(_scored(q + 0.01, q, c), inc, "gap_closed", n_boot=300)
    bar = paired_bootstrap(_scored(q + 0.01, q, c), inc, "gap_closed", n_boot=300, min_improvement=strong.ci[0] + 0.01)
    assert strong.better and not bar.better


def test_pairing_is_narrower_than_comparing_two_separate_intervals():
    """Resampling prompts jointly cancels what both routers share; separate intervals overlap."""
    from routerzoo.evaluation.report import evaluate_predictions

    q, c = _truth(200, seed=7)
    noise = np.random.default_rng(1).normal(0, 0.3, size=q.shape)
    a, b = q + noise, q + noise
    b[:20] = q.mean(axis=0)  # b is a worse copy of a on 20 prompts
    res = paired_bootstrap(_scored(a, q, c), _scored(b, q, c), "gap_closed", n_boot=400)
    ra = evaluate_predictions(a, COST, q, c, ["x", "y", "z"], bootstrap=400)["bootstrap"]["gap_closed"]
    rb = evaluate_predictions(b, COST, q, c, ["x", "y", "z"], bootstrap=400)["bootstrap"]["gap_closed"]
    unpaired = float(np.hypot(ra[1] - ra[0], rb[1] - rb[0]))  # the width of a difference of independent estimates
    assert res.ci[1] - res.ci[0] < 0.5 * unpaired


@pytest.mark.parametrize("kwargs, match", [
    ({"metric": "pair_accuracy"}, "resamples gap_closed"),
    ({"confidence": 1.5}, "--confidence 1.5"),
    ({"min_improvement": float("nan")}, "--min-improvement"),
])
def test_bad_gate_settings_are_one_line(kwargs, match):
    q, c = _truth(20)
    s = _scored(q, q, c)
    with pytest.raises(UserError, match=match):
        paired_bootstrap(s, s, **({"metric": "gap_closed"} | kwargs))
    with pytest.raises(UserError, match="same prompts"):
        paired_bootstrap(s, _scored(q[:10], q[:10], c[:10]))


# -- the CLI against a real registry ----------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """router/1: best single model (closes no gap); router/2: kNN that reads the prompt."""
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers.kinds.baselines import BestSingleConfig
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    root = tmp_path_factory.mktemp("gate")
    data = save_dataset(make_dataset(topic_outcomes(60), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True)),
                        root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = TrackingConfig(tracking_uri=uri, register="router")
    for kind, cfg, out in (("best-single", BestSingleConfig(), "v1"), ("knn", KNNConfig(k=7), "v2")):
        train_router(kind, cfg, data, root / out, eval_data=data, tracking=tracking, progress=False)
    return {"data": str(data), "uri": uri}


def _zoo(zoo, capsys, *args) -> tuple[int, str, str]:
    from routerzoo.cli import main

    code = main(["zoo", *args, "--tracking-uri", zoo["uri"]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gated_promotion_prints_the_paired_interval_and_refuses_below_the_bar(zoo, capsys):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=zoo["uri"])
    assert _zoo(zoo, capsys, "promote", "router/1", "--alias", "champion")[0] == 0
    gate = ("--alias", "champion", "--if-better-than", "champion", "--data", zoo["data"])
    # a bar no router can clear: refused in one line that gives the interval, and the alias stays
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", *gate, "--min-improvement", "2")
    assert code == 1 and "\n" not in err.strip(), err
    assert "better by" in err and "95% paired CI [" in err and "lower bound must exceed +2.0000" in err
    assert str(client.get_model_version_by_alias("router", "champion").version) == "1"
    # the kNN beats the best single model by more than the noise
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", *gate, "--confidence", "0.9")
    assert code == 0, err
    assert "(delta +" in out and "90% paired CI [+" in out, out
    record = json.loads(client.get_model_version("router", "2").tags["routerzoo.promotion.champion"])
    assert record["confidence"] == 0.9 and record["ci"][0] > 0 and record["n_prompts"] == 36
    # a bad level is one line before anything is evaluated
    code, out, err = _zoo(zoo, capsys, "promote", "router/1", *gate, "--confidence", "95")
    assert code == 2 and "--confidence 95" in err and "\n" not in err.strip(), err


def test_plain_promote_onto_a_worse_recorded_metric_warns(zoo, capsys):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=zoo["uri"])
    assert _zoo(zoo, capsys, "promote", "router/2", "--alias", "champion")[0] == 0
    code, out, err = _zoo(zoo, capsys, "promote", "router/1", "--alias", "champion")
    assert code == 0 and "promoted router/1 to @champion" in out
    assert "warning: router/1 is worse than @champion (router/2) on its recorded eval_gap_closed" in err, err
    assert str(client.get_model_version_by_alias("router", "champion").version) == "1"
    # moving it back onto the better one says nothing
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", "--alias", "champion")
    assert code == 0 and "warning" not in err
