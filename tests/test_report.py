"""Decisions, cost-weight sweeps, the evaluation report, its text table and its plot."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from routerzoo.evaluation import (
    aiq,
    cost_weight_grid,
    decide,
    evaluate_predictions,
    format_table,
    hull_value,
    nondecreasing_convex_hull,
    oracle_points,
    plot_reports,
    sweep,
)

MODELS = ["tiny", "small", "medium", "large"]


def _table(seed: int = 0, n: int = 400):
    """A synthetic outcome table: 4 models, better ones dearer, binary quality, per-prompt costs."""
    rng = np.random.default_rng(seed)
    skill = np.array([0.35, 0.5, 0.65, 0.8])
    price = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    p = np.clip(skill[None] + rng.uniform(-0.3, 0.3, (n, 1)), 0, 1)
    tq = (rng.random((n, 4)) < p).astype(float)
    tc = price[None] * rng.lognormal(0, 0.3, (n, 1))
    pq = np.clip(p + rng.normal(0, 0.1, (n, 4)), 0, 1)
    return pq, np.broadcast_to(price, (n, 4)).copy(), tq, tc


# --------------------------------------------------------------------------- decide / grid / sweep


def test_decide_tie_breaks_to_cheaper_then_lower_index():
    pq = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.2, 0.9, 0.5]]
    pc = [[0.3, 0.1, 0.0], [0.2, 0.2, 0.2], [0.0, 1.0, 0.5]]
    assert decide(pq, pc, 0.0).tolist() == [1, 0, 1]
    assert decide(pq, pc, 1e6).tolist() == [2, 0, 0]
    # one price per model, broadcast over prompts
    assert decide([[1.0, 1.0]], [0.2, 0.1], 0.0).tolist() == [1]


def test_cost_weight_grid_spans_best_to_cheapest():
    pq, pc, tq, tc = _table()
    w = cost_weight_grid(tc, 64)
    assert w.shape == (64,) and w[0] == 0.0 and np.all(np.diff(w) > 0)
    rng = np.random.default_rng(0)
    anyq = rng.random(tq.shape)  # any quality in [0, 1] loses to cost at the last weight
    np.testing.assert_array_equal(decide(anyq, tc, w[-1]), tc.argmin(axis=1))
    assert decide(anyq, tc, 0.0).tolist() == anyq.argmax(axis=1).tolist()
    # scale-free: costs in cents instead of dollars give weights 100x smaller
    np.testing.assert_allclose(cost_weight_grid(tc * 100, 64), w / 100)


def test_cost_weight_grid_with_equal_costs_is_zero_only():
    assert cost_weight_grid(np.full((5, 3), 0.01)).tolist() == [0.0]
    assert cost_weight_grid(np.full((5, 1), 0.01)).tolist() == [0.0]


def test_sweep_points():
    pq, pc, tq, tc = _table()
    w = cost_weight_grid(pc, 16)
    pts = sweep(pq, pc, tq, tc, w)
    assert len(pts) == 16 and set(pts[0]) == {"cost_weight", "cost", "quality", "model_share"}
    first = pq.argmax(axis=1)
    assert pts[0]["quality"] == pytest.approx(tq[np.arange(len(tq)), first].mean())
    assert pts[-1]["model_share"] == [1.0, 0.0, 0.0, 0.0]  # all to the cheapest
    assert all(sum(p["model_share"]) == pytest.approx(1.0) for p in pts)


def test_oracle_beats_every_single_model():
    _, _, tq, tc = _table(1)
    w = cost_weight_grid(tc, 64)
    pts = oracle_points(tq, tc, w)
    oc, oq = np.array([p["cost"] for p in pts]), np.array([p["quality"] for p in pts])
    assert oq[0] == pytest.approx(tq.max(axis=1).mean())
    hc, hq = nondecreasing_convex_hull(oc, oq)
    for j in range(tq.shape[1]):
        assert hull_value(hc, hq, tc[:, j].mean()) >= tq[:, j].mean()


# --------------------------------------------------------------------------- evaluate_predictions


def test_report_curve_recomputes_reported_aiq_and_is_json():
    pq, pc, tq, tc = _table(2)
    r = evaluate_predictions(pq, pc, tq, tc, MODELS, strong="large", weak="tiny")
    json.dumps(r, allow_nan=False)
    assert all(set(p) == {"cost_weight", "cost", "quality"} for p in r["curve"])
    lo, hi = r["cost_range"]
    assert (lo, hi) == (
        min(s["cost"] for s in r["single_models"]),
        max(s["cost"] for s in r["single_models"]),
    )
    again = aiq([p["cost"] for p in r["curve"]], [p["quality"] for p in r["curve"]], lo, hi)
    assert again == pytest.approx(r["aiq"]["router"], abs=1e-12)
    oc = r["oracle"]["curve"]
    assert aiq([p["cost"] for p in oc], [p["quality"] for p in oc], lo, hi) == pytest.approx(
        r["aiq"]["oracle"]
    )
    sm = r["single_models"]
    assert aiq([s["cost"] for s in sm], [s["quality"] for s in sm], lo, hi) == pytest.approx(
        r["aiq"]["zero_router"]
    )
    gap = (r["aiq"]["router"] - r["aiq"]["zero_router"]) / (r["aiq"]["oracle"] - r["aiq"]["zero_router"])
    assert r["gap_closed"] == pytest.approx(gap)
    assert r["aiq"]["zero_router"] <= r["aiq"]["oracle"] <= r["oracle"]["aiq_exact"] + 1e-12
    assert r["best_single"]["name"] == "large"
    assert r["max_quality"] == max(p["quality"] for p in r["curve"])
    for key in ("apgr", "apgr_routellm", "cpt20", "cpt50", "cpt80", "cascade_auc", "cascade_max_diff"):
        assert isinstance(r[key], float), key
    assert 0.0 < r["cpt50"] < r["cpt80"] <= 1.0
    assert len(r["model_share"]) == len(r["curve"])


def test_perfect_predictions_close_the_whole_gap_and_constant_ones_none():
    _, _, tq, tc = _table(3)
    perfect = evaluate_predictions(tq, tc, tq, tc, MODELS)
    assert perfect["gap_closed"] == pytest.approx(1.0)
    const_q = np.broadcast_to(tq.mean(axis=0), tq.shape)
    const = evaluate_predictions(const_q, tc.mean(axis=0), tq, tc, MODELS)
    assert -0.05 <= const["gap_closed"] <= 1e-9  # it can only reach the single models' points


def test_bootstrap_intervals():
    pq, pc, tq, tc = _table(4)
    r = evaluate_predictions(pq, pc, tq, tc, MODELS, bootstrap=100, seed=1)
    b = r["bootstrap"]
    assert b["n"] == 100
    lo, hi = b["aiq_router"]
    assert lo < r["aiq"]["router"] < hi
    glo, ghi = b["gap_closed"]
    assert glo < r["gap_closed"] < ghi
    again = evaluate_predictions(pq, pc, tq, tc, MODELS, bootstrap=100, seed=1)
    assert again["bootstrap"] == b


def test_one_model_and_equal_costs():
    rng = np.random.default_rng(0)
    tq = (rng.random((50, 1)) < 0.5) * 1.0
    r = evaluate_predictions(rng.random((50, 1)), np.full(1, 0.01), tq, np.full((50, 1), 0.01), ["only"])
    assert r["aiq"]["router"] == r["aiq"]["zero_router"] == r["aiq"]["oracle"] == pytest.approx(tq.mean())
    assert r["gap_closed"] is None
    tq3 = (rng.random((50, 3)) < 0.5) * 1.0
    r3 = evaluate_predictions(
        rng.random((50, 3)), np.full(3, 0.01), tq3, np.full((50, 3), 0.01), ["a", "b", "c"]
    )
    assert r3["cost_range"] == [0.01, 0.01]
    assert r3["aiq"]["zero_router"] == pytest.approx(tq3.mean(axis=0).max())
    assert r3["aiq"]["oracle"] == pytest.approx(tq3.max(axis=1).mean())
    json.dumps(r3, allow_nan=False)


def test_bad_inputs_raise_clear_value_errors():
    pq, pc, tq, tc = _table()
    bad = pq.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"pred_quality: 1 NaN .* first at index \(3, 2\)"):
        evaluate_predictions(bad, pc, tq, tc, MODELS)
    with pytest.raises(ValueError, match="4 columns"):
        evaluate_predictions(pq, pc, tq, tc, MODELS[:3])
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_predictions(pq[:10], pc[:10], tq, tc, MODELS)
    with pytest.raises(ValueError, match="not one of the models"):
        evaluate_predictions(pq, pc, tq, tc, MODELS, strong="gpt-9", weak="tiny")
    with pytest.raises(ValueError, match="both strong and weak"):
        evaluate_predictions(pq, pc, tq, tc, MODELS, strong="large")
    with pytest.raises(ValueError, match=">= 0"):
        evaluate_predictions(pq, pc, tq, -tc, MODELS)


# --------------------------------------------------------------------------- table and plot


def test_format_table_is_aligned():
    pq, pc, tq, tc = _table()
    a = evaluate_predictions(pq, pc, tq, tc, MODELS, strong="large", weak="tiny") | {"name": "knn"}
    b = evaluate_predictions(tq, tc, tq, tc, MODELS) | {"name": "a-much-longer-router-name"}
    text = format_table([a, b])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("router")
    assert "gap closed" in lines[0] and "APGR" in lines[0]
    assert lines[3].startswith("a-much-longer-router-name") and "100.0%" in lines[3]
    # right-aligned numeric columns end at the same offset as their header
    assert (
        lines[0].index("zero AIQ") + len("zero AIQ") == lines[2].index(f"{a['aiq']['zero_router']:.4f}") + 6
    )
    assert format_table([]) == "(no results)"
    del a["name"]
    assert format_table([a | {"router": {"kind": "mlp"}}]).splitlines()[2].startswith("mlp ")


def test_plot_writes_png(tmp_path):
    pq, pc, tq, tc = _table()
    a = evaluate_predictions(pq, pc, tq, tc, MODELS)
    b = evaluate_predictions(tq, tc, tq, tc, MODELS)
    out = plot_reports({"noisy": a, "perfect": b}, tmp_path / "sub" / "plot.png", title="t")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_import_is_light():
    code = "import sys, routerzoo.evaluation; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
