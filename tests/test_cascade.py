"""The cascade policy run through the offline client, its threshold curve and its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from routerzoo.data.matrix import OutcomeMatrix
from routerzoo.errors import ConfigError, UserError
from routerzoo.evaluation import metrics as M
from routerzoo.evaluation.sequential import cascade_curve, evaluate_sequential, run_offline
from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence
from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.routers.policies.clients import OfflineClient

CHAIN = ["small", "mid", "large"]
BASE = np.array([0.001, 0.01, 0.1])  # USD per prompt before the length factor
# each answer's confidence exp(mean token logprob): small is sure of p0-p2, mid of p3-p4, large of all
CONF = np.array(
    [
        [0.95, 0.40, 0.90],
        [0.90, 0.40, 0.90],
        [0.80, 0.40, 0.90],
        [0.30, 0.85, 0.90],
        [0.20, 0.70, 0.90],
        [0.10, 0.20, 0.90],
    ]
)
# true quality: right where confident (plus one confident-but-wrong answer: small on p2)
QUALITY = np.array(
    [
        [1.0, 0.0, 1.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
    ]
)


def _matrix(missing: tuple[int, int] | None = None) -> OutcomeMatrix:
    n, m = QUALITY.shape
    length = 1.0 + np.arange(n) / 10.0
    cost = length[:, None] * BASE[None, :]
    quality = QUALITY.copy()
    lps = np.empty((n, m), dtype=object)
    responses = np.empty((n, m), dtype=object)
    for i in range(n):
        for j in range(m):
            # three tokens whose mean logprob is log(CONF): the scorer's "mean" statistic recovers CONF
            lps[i, j] = [math.log(CONF[i, j]) + d for d in (-0.1, 0.0, 0.1)]
            responses[i, j] = f"answer {i} from {CHAIN[j]}"
    if missing is not None:
        quality[missing] = np.nan
        cost[missing] = np.nan
        lps[missing] = None
        responses[missing] = None
    return OutcomeMatrix(
        [f"id{i}" for i in range(n)], [f"prompt {i}" for i in range(n)], list(CHAIN),
        quality, cost, [None] * n, responses, lps,
    )  # fmt: skip


class CountingClient(OfflineClient):
    """An offline client that records every ``complete`` call (model, batch size)."""

    def __init__(self, matrix):
        super().__init__(matrix)
        self.log: list[tuple[str, int]] = []

    def complete(self, model, prompts):
        self.log.append((model, len(prompts)))
        return super().complete(model, prompts)


class CountingScorer(LogprobConfidence):
    """Logprob confidence that counts its ``predict`` calls."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def predict(self, prompts, responses, token_logprobs=None):
        self.batches.append(len(prompts))
        return super().predict(prompts, responses, token_logprobs)


def _run(thresholds, matrix=None):
    matrix = matrix if matrix is not None else _matrix()
    client = CountingClient(matrix)
    scorer = CountingScorer()
    traces = CascadePolicy(CascadeConfig(chain=list(CHAIN), thresholds=thresholds), scorer).run(
        list(matrix.prompts), client
    )
    return traces, client, scorer, matrix


# --------------------------------------------------------------------------------------------
# the policy


def test_threshold_zero_calls_only_the_first_stage():
    traces, client, scorer, mx = _run(0.0)
    assert client.log == [("small", 6)]
    assert scorer.batches == [6]
    for i, t in enumerate(traces):
        assert [c.model for c in t.calls] == ["small"] and t.model == "small" and t.known
        assert t.cost == pytest.approx(mx.cost[i, 0])
        assert t.calls[0].score == pytest.approx(CONF[i, 0])
        assert t.completion.quality == QUALITY[i, 0]


def test_threshold_above_one_calls_every_stage_and_sums_costs():
    traces, client, scorer, mx = _run(1.01)
    assert client.log == [("small", 6), ("mid", 6), ("large", 6)]
    assert scorer.batches == [6, 6]  # the last stage's answers are not scored
    for i, t in enumerate(traces):
        assert [c.model for c in t.calls] == CHAIN
        assert t.answer == 2 and t.model == "large"
        assert t.cost == pytest.approx(mx.cost[i].sum())
        assert t.calls[-1].score is None
        assert t.completion.quality == QUALITY[i, 2]


def test_intermediate_threshold_escalates_exactly_the_unsure_prompts():
    traces, client, _, _ = _run(0.5)
    stops = [t.model for t in traces]
    assert stops == ["small", "small", "small", "mid", "mid", "large"]
    # one batched call per stage, with only the pending prompts
    assert client.log == [("small", 6), ("mid", 3), ("large", 1)]
    assert [len(t.calls) for t in traces] == [1, 1, 1, 2, 2, 3]
    assert traces[4].calls[0].score == pytest.approx(0.2) and traces[4].calls[1].score == pytest.approx(0.7)


def test_a_score_equal_to_the_threshold_is_accepted():
    mx = _matrix()
    s = LogprobConfidence().predict(["prompt 2"], [None], [np.asarray(mx.token_logprobs[2, 0])])[0]
    traces, _, _, _ = _run(float(s))
    assert traces[2].model == "small"  # score >= threshold, not >
    assert [t.model for t in traces][:2] == ["small", "small"]


def test_per_stage_thresholds():
    traces, _, _, _ = _run([0.85, 0.75])
    # small accepts only >= 0.85 (p0, p1); mid accepts only >= 0.75 (p3; p2 has 0.4, p4 0.7)
    assert [t.model for t in traces] == ["small", "small", "large", "mid", "large", "large"]


def test_missing_outcome_marks_the_trace_unknown():
    mx = _matrix(missing=(4, 1))  # mid has no answer for p4
    traces, _, _, _ = _run(0.5, mx)
    t = traces[4]
    assert not t.known and t.completion is None
    assert [c.model for c in t.calls] == ["small", "mid"]
    assert math.isnan(t.cost)
    assert all(tr.known for k, tr in enumerate(traces) if k != 4)
    r = run_offline(CascadePolicy(CascadeConfig(chain=list(CHAIN), thresholds=0.5), LogprobConfidence()), mx)
    assert r["known"].tolist() == [True, True, True, True, False, True]
    assert np.isnan(r["quality"][4]) and r["model"][4] == -1 and r["n_calls"][4] == 2
    assert r["model"].tolist()[:4] == [0, 0, 0, 1]
    # at threshold 0 that prompt never reaches mid: it is scored
    r0 = run_offline(CascadePolicy(CascadeConfig(chain=list(CHAIN), thresholds=0.0), LogprobConfidence()), mx)
    assert r0["known"].all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chain": []},
        {"chain": ["small", "small"]},
        {"chain": ["small", "mid", "large"], "thresholds": [0.5]},
        {"chain": ["small", "mid"], "thresholds": [0.5, 0.5]},
        {"chain": ["small", "mid"], "thresholds": float("nan")},
    ],
)
def test_config_errors(kwargs):
    with pytest.raises(UserError):
        CascadeConfig(**kwargs)


def test_config_expands_one_threshold_and_round_trips():
    cfg = CascadeConfig(chain=["a", "b", "c"], thresholds=0.7)
    assert cfg.thresholds == [0.7, 0.7]
    assert CascadeConfig(chain=cfg.chain, thresholds=cfg.thresholds) == cfg
    assert CascadeConfig(chain=["a"], thresholds=0.3).thresholds == []
    d = CascadePolicy(cfg, LogprobConfidence()).to_dict()
    assert d["kind"] == "cascade" and d["scorer"]["kind"] == "logprob-confidence"


def test_chain_checked_against_the_client_and_scorer_required():
    mx = _matrix()
    policy = CascadePolicy(CascadeConfig(chain=["small", "gpt-9"]), LogprobConfidence())
    with pytest.raises(UserError, match=r"\['gpt-9'\].*available: \['small', 'mid', 'large'\]"):
        policy.run(list(mx.prompts), OfflineClient(mx))
    with pytest.raises(ConfigError):
        CascadePolicy(CascadeConfig(chain=["small"]))


# --------------------------------------------------------------------------------------------
# curve and report


def test_curve_ends_are_the_first_model_and_the_full_chain():
    mx = _matrix()
    pts = cascade_curve(LogprobConfidence(), CHAIN, mx)
    assert [p["threshold"] for p in pts] == sorted(p["threshold"] for p in pts)
    first, last = pts[0], pts[-1]
    assert first["cost"] == pytest.approx(mx.cost[:, 0].mean())
    assert first["quality"] == pytest.approx(QUALITY[:, 0].mean())
    assert first["calls_per_prompt"] == 1.0 and first["deferral_rate"] == [0.0, None]  # none reach mid
    assert last["cost"] == pytest.approx(mx.cost.sum(axis=1).mean())
    assert last["quality"] == pytest.approx(QUALITY[:, 2].mean())
    assert last["calls_per_prompt"] == 3.0 and last["deferral_rate"] == [1.0, 1.0]
    costs = [p["cost"] for p in pts]
    assert all(b >= a - 1e-15 for a, b in zip(costs, costs[1:], strict=False))  # complete table
    assert all(p["n_unscored"] == 0 and p["n_scored"] == 6 for p in pts)


def test_curve_point_matches_a_direct_run():
    pts = cascade_curve(LogprobConfidence(), CHAIN, _matrix(), thresholds=[0.5])
    (p,) = pts
    # p0-p2 stop at small, p3-p4 at mid, p5 at large (see the intermediate-threshold test)
    assert p["quality"] == pytest.approx((1 + 1 + 0 + 1 + 1 + 1) / 6)
    assert p["deferral_rate"] == [pytest.approx(3 / 6), pytest.approx(1 / 3)]
    assert p["calls_per_prompt"] == pytest.approx(10 / 6)


def test_curve_counts_unscored_prompts():
    mx = _matrix(missing=(4, 1))
    pts = cascade_curve(LogprobConfidence(), CHAIN, mx, thresholds=[0.0, 0.5, 1.01])
    assert [p["n_unscored"] for p in pts] == [0, 1, 1]
    assert [p["n_scored"] for p in pts] == [6, 5, 5]
    rep = evaluate_sequential(pts, mx, CHAIN)
    assert rep["n_unscored"] == 1
    assert rep["single_models"][1]["n_prompts"] == 5
    assert rep["oracle"]["n_prompts"] == 5


def test_report_metrics_recompute_from_its_curve():
    mx = _matrix()
    rep = evaluate_sequential(cascade_curve(LogprobConfidence(), CHAIN, mx, n_points=16), mx, CHAIN)
    json.dumps(rep, allow_nan=False)
    c = [p["cost"] for p in rep["curve"]]
    q = [p["quality"] for p in rep["curve"]]
    a, b = rep["cost_range"]
    assert (a, b) == (pytest.approx(mx.cost[:, 0].mean()), pytest.approx(mx.cost[:, 2].mean()))
    assert rep["aiq"]["router"] == pytest.approx(M.aiq(c, q, a, b))
    singles = rep["single_models"]
    assert rep["aiq"]["zero_router"] == pytest.approx(
        M.aiq([s["cost"] for s in singles], [s["quality"] for s in singles], a, b)
    )
    assert rep["cascade_auc"] == pytest.approx(M.cascade_auc(c, q, a, b, QUALITY[:, 0].mean()))
    z, o = rep["aiq"]["zero_router"], rep["aiq"]["oracle"]
    assert rep["gap_closed"] == pytest.approx((rep["aiq"]["router"] - z) / (o - z))
    assert rep["best_single"]["name"] == "large"
    assert rep["max_quality"] == pytest.approx(max(q))
    assert rep["n_prompts"] == 6 and rep["n_unscored"] == 0
    # the oracle's best point: each prompt's best model, cheapest among equals
    assert rep["oracle"]["quality"] == 1.0
    assert rep["aiq"]["oracle"] >= rep["aiq"]["router"] - 1e-12


def test_single_model_chain_is_one_point():
    mx = _matrix()
    pts = cascade_curve(LogprobConfidence(), ["mid"], mx)
    assert len(pts) == 1 and pts[0]["cost"] == pytest.approx(mx.cost[:, 1].mean())
    assert pts[0]["deferral_rate"] == []


def test_curve_rejects_unknown_chain_models():
    with pytest.raises(UserError, match="not in the table"):
        cascade_curve(LogprobConfidence(), ["small", "nope"], _matrix())
