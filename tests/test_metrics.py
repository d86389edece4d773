"""Metrics against hand-computed values and literal transcriptions of the reference code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from routerzoo.evaluation import metrics as M
from routerzoo.evaluation.metrics import (
    EvaluationInputError,
    aiq,
    apgr,
    apgr_routellm,
    cascade_auc,
    cascade_max_diff,
    cpt,
    hull_value,
    nondecreasing_convex_hull,
    oracle_frontier,
    pgr,
    pgr_curve,
)

_trapz = getattr(np, "trapezoid", None) or np.trapz

# two single models at (cost 1, quality 0.5) and (cost 3, quality 0.9)
C2, Q2 = [1.0, 3.0], [0.5, 0.9]


# --------------------------------------------------------------------------- hull


def test_hull_drops_dominated_and_decreasing_points():
    hc, hq = nondecreasing_convex_hull([1, 2, 3, 4, 2.5], [0.5, 0.6, 0.9, 0.7, 0.9])
    # (2, 0.6) is under the chord (1,.5)-(3,.9); (4, .7) is past the top; (2.5, .9) beats (3, .9)
    np.testing.assert_allclose(hc, [1, 2.5])
    np.testing.assert_allclose(hq, [0.5, 0.9])


def test_hull_keeps_point_above_chord_and_best_of_equal_costs():
    hc, hq = nondecreasing_convex_hull([1, 2, 3, 2], [0.5, 0.8, 0.9, 0.1])
    np.testing.assert_allclose(hc, [1, 2, 3])
    np.testing.assert_allclose(hq, [0.5, 0.8, 0.9])


@pytest.mark.parametrize("seed", range(5))
def test_hull_is_nondecreasing_concave_and_above_every_point(seed):
    rng = np.random.default_rng(seed)
    c, q = rng.random(40), rng.random(40)
    hc, hq = nondecreasing_convex_hull(c, q)
    assert np.all(np.diff(hc) > 0) and np.all(np.diff(hq) > 0)
    slopes = np.diff(hq) / np.diff(hc)
    assert np.all(np.diff(slopes) < 0)
    assert hc[0] == c.min() and hq[-1] == q.max()
    assert np.all(q <= hull_value(hc, hq, c) + 1e-12)


def test_hull_of_one_point():
    hc, hq = nondecreasing_convex_hull([2.0], [0.3])
    assert hc.tolist() == [2.0] and hq.tolist() == [0.3]


# --------------------------------------------------------------------------- AIQ


def test_aiq_zero_router_by_hand():
    # the segment from (1, .5) to (3, .9): mean height 0.7
    assert aiq(C2, Q2, 1, 3) == pytest.approx(0.7)


def test_aiq_point_above_segment_raises_it():
    # hull (1,.5),(2,.8),(3,.9): area 0.65 + 0.85 = 1.5 over a range of 2
    assert aiq(C2 + [2.0], Q2 + [0.8], 1, 3) == pytest.approx(0.75)


def test_aiq_dominated_point_changes_nothing():
    assert aiq(C2 + [2.0], Q2 + [0.6], 1, 3) == pytest.approx(0.7)
    assert aiq(C2 + [3.5], Q2 + [0.8], 1, 3) == pytest.approx(0.7)


def test_aiq_flat_extensions_left_and_right():
    # R~ = 0.6 on [1, 1.5], rises to 0.8 at 2.5, 0.8 on [2.5, 3]: (0.3 + 0.7 + 0.4) / 2
    assert aiq([1.5, 2.5], [0.6, 0.8], 1, 3) == pytest.approx(0.7)


def test_aiq_degenerate_range_is_hull_value():
    assert aiq(C2, Q2, 2, 2) == pytest.approx(0.7)
    assert aiq([1.0], [0.4], 1, 1) == pytest.approx(0.4)


def test_aiq_routerbench_convention():
    # their code: trapezoids from the hull's first point to c_max, divided by c_max
    assert aiq(C2, Q2, None, 3, convention="routerbench") == pytest.approx(1.4 / 3)
    assert aiq(C2, Q2, None, 4, convention="routerbench") == pytest.approx((1.4 + 0.9) / 4)


def test_aiq_rejects_bad_range_and_convention():
    with pytest.raises(ValueError, match="below c_min"):
        aiq(C2, Q2, 3, 1)
    with pytest.raises(ValueError, match="convention"):
        aiq(C2, Q2, 1, 3, convention="nope")


def test_aiq_matches_dense_numeric_integral():
    rng = np.random.default_rng(3)
    c, q = rng.random(30) * 5, rng.random(30)
    hc, hq = nondecreasing_convex_hull(c, q)
    x = np.linspace(0.5, 4.5, 200001)
    assert aiq(c, q, 0.5, 4.5) == pytest.approx(_trapz(hull_value(hc, hq, x), x) / 4.0, abs=1e-8)


# --------------------------------------------------------------------------- PGR, APGR, CPT


def test_pgr_curve_by_hand():
    share, quality = pgr_curve([3, 1, 2], [0, 1, 0], [1, 1, 0])
    np.testing.assert_allclose(share, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(quality, [1 / 3, 2 / 3, 2 / 3, 2 / 3])


def test_pgr_curve_ties_average_vs_stable():
    qw, qs = np.array([0.0, 0, 0, 0]), np.array([1.0, 0, 0, 0])
    _, q_avg = pgr_curve(np.zeros(4), qw, qs)
    np.testing.assert_allclose(q_avg, [0, 1 / 16, 2 / 16, 3 / 16, 4 / 16])  # expected value, linear
    _, q_stable = pgr_curve(np.zeros(4), qw, qs, ties="stable")
    np.testing.assert_allclose(q_stable, [0, 0.25, 0.25, 0.25, 0.25])  # index 0 goes first


def test_constant_score_gives_apgr_exactly_half():
    rng = np.random.default_rng(0)
    qw, qs = (rng.random(500) < 0.4) * 1.0, (rng.random(500) < 0.8) * 1.0
    share, quality = pgr_curve(np.zeros(500), qw, qs)
    assert apgr(share, quality, qw.mean(), qs.mean()) == pytest.approx(0.5)


def test_perfect_router_apgr_by_hand():
    # strong better on 10 of 100 prompts and equal elsewhere: PGR(c) = min(10 c, 1) -> APGR = 1 - 0.1/2
    qw = np.r_[np.zeros(10), np.ones(45), np.zeros(45)]
    qs = np.r_[np.ones(10), np.ones(45), np.zeros(45)]
    share, quality = pgr_curve(qs - qw, qw, qs)
    assert apgr(share, quality, qw.mean(), qs.mean()) == pytest.approx(0.95)
    # with one gained prompt in 1000 the perfect router's APGR tends to 1
    qw1, qs1 = np.zeros(1000), np.r_[1.0, np.zeros(999)]
    s1, q1 = pgr_curve(qs1 - qw1, qw1, qs1)
    assert apgr(s1, q1, 0.0, qs1.mean()) == pytest.approx(1 - 0.0005)


def test_random_router_apgr_about_half_and_perfect_beats_it():
    rng = np.random.default_rng(1)
    n = 20000
    qw, qs = (rng.random(n) < 0.5) * 1.0, (rng.random(n) < 0.8) * 1.0
    s_r, q_r = pgr_curve(rng.random(n), qw, qs)
    a_rand = apgr(s_r, q_r, qw.mean(), qs.mean())
    assert a_rand == pytest.approx(0.5, abs=0.02)
    s_p, q_p = pgr_curve(qs - qw, qw, qs)
    assert apgr(s_p, q_p, qw.mean(), qs.mean()) > 1.0 > a_rand  # the oracle overshoots PGR 1
    s_a, q_a = pgr_curve(qw - qs, qw, qs)  # the worst router
    assert apgr(s_a, q_a, qw.mean(), qs.mean()) < 0.1


def test_apgr_requires_full_share_range_and_distinct_models():
    with pytest.raises(ValueError, match="span"):
        apgr([0, 0.5], [0.1, 0.2], 0.1, 0.3)
    with pytest.raises(ValueError, match="undefined"):
        pgr([0.5], 0.5, 0.5)


def _routellm_reference(score, qw, qs, num_results=10):
    """Literal transcription of RouteLLM's benchmarks.py + evaluate.py (apgr_metric)."""
    pd = pytest.importorskip("pandas")
    _, thresholds = pd.qcut(pd.Series(score), num_results, retbins=True)
    rows = []
    for i, t in enumerate(thresholds):
        sel = score >= t if i != len(thresholds) - 1 else score > t
        results = np.where(sel, qs, qw)
        rows.append(
            {"strong_percentage": sel.sum() / len(sel) * 100, "accuracy": results.sum() / len(results) * 100}
        )
    df = pd.DataFrame(rows).sort_values(by=["strong_percentage"])
    weak_acc, strong_acc = qw.mean() * 100, qs.mean() * 100
    x = df["strong_percentage"].to_numpy() / 100
    auc = _trapz(df["accuracy"].to_numpy(), x)
    weak_auc = _trapz(np.full(len(df), weak_acc), x)
    strong_auc = _trapz(np.full(len(df), strong_acc), x)
    return (auc - weak_auc) / (strong_auc - weak_auc)


@pytest.mark.parametrize("seed", range(3))
def test_apgr_routellm_matches_their_code(seed):
    rng = np.random.default_rng(seed)
    n = 997
    qw, qs = (rng.random(n) < 0.6) * 1.0, (rng.random(n) < 0.8) * 1.0
    score = (qs - qw) + rng.normal(0, 1.0, n)
    assert apgr_routellm(score, qw, qs) == pytest.approx(_routellm_reference(score, qw, qs), abs=1e-12)
    # the exact curve and 10 bins agree roughly, not exactly
    s, q = pgr_curve(score, qw, qs)
    assert apgr(s, q, qw.mean(), qs.mean()) == pytest.approx(apgr_routellm(score, qw, qs), abs=0.03)


def test_cpt_takes_first_crossing_of_non_monotone_curve():
    share = [0, 0.25, 0.5, 0.75, 1]
    p = [0, 0.6, 0.2, 0.8, 1]
    assert cpt(share, p, 0.5) == pytest.approx(0.25 * 0.5 / 0.6)
    assert cpt(share, p, 0.7) == pytest.approx(0.5 + 0.25 * 0.5 / 0.6)
    assert cpt(share, p, 0.0) == 0.0
    assert np.isnan(cpt(share, p, 1.5))
    # unsorted input is sorted by share first
    assert cpt(share[::-1], p[::-1], 0.5) == pytest.approx(0.25 * 0.5 / 0.6)


# --------------------------------------------------------------------------- cascade AUC


def test_cascade_auc_by_hand():
    # anchor (1, .5) -> (2, .8) linear: 0.65, then flat .8 on [2, 3]: 0.8; / 2
    assert cascade_auc([2.0], [0.8], 1, 3, 0.5) == pytest.approx(0.725)
    assert cascade_auc(C2, Q2, 1, 3, 0.5) == pytest.approx(0.7)
    # unlike the AIQ hull, a dip in the raw curve counts
    assert cascade_auc([1, 2, 3], [0.5, 0.5, 0.9], 1, 3, 0.5) == pytest.approx(0.6)
    assert cascade_auc(C2, Q2, 2, 2, 0.5) == pytest.approx(0.7)


def _eth_reference(y, x, x_min, x_max, y_min_base):
    """Literal transcription of cascade-routing's selection/utils.py area_under_curve."""
    interp1d = pytest.importorskip("scipy.interpolate").interp1d
    x, y = np.array(x), np.array(y)
    unique = np.unique(np.array(list(zip(x, y, strict=True))), axis=0)
    x, y = unique[:, 0], unique[:, 1]
    idx = np.argsort(x)
    x, y = x[idx], y[idx]
    f = interp1d(x, y, kind="linear", fill_value="extrapolate")
    if x[-1] < x_max:
        x, y = np.append(x, x_max), np.append(y, y[-1])
    if x[0] > x_min:
        x, y = np.append(x, x_min), np.append(y, y_min_base)
    if x_min not in x:
        x, y = np.append(x, x_min), np.append(y, f(x_min))
    if x_max not in x:
        x, y = np.append(x, x_max), np.append(y, f(x_max))
    idx = np.argsort(x)
    x, y = x[idx], y[idx]
    mask = (x >= x_min) & (x <= x_max)
    return _trapz(y[mask], x[mask]) / (x_max - x_min)


@pytest.mark.parametrize("lo,hi", [(0.5, 4.0), (0.05, 0.9), (2.0, 3.0)])
def test_cascade_auc_matches_their_code(lo, hi):
    rng = np.random.default_rng(7)
    c, q = np.sort(rng.random(12)) * 3 + 0.2, rng.random(12)
    assert cascade_auc(c, q, lo, hi, 0.1) == pytest.approx(_eth_reference(q, c, lo, hi, 0.1), abs=1e-12)


def test_cascade_max_diff():
    assert cascade_max_diff([2.0], [0.8], C2, Q2) == pytest.approx(0.1)
    assert cascade_max_diff([2.0, 3.0], [0.6, 0.9], C2, Q2) == 0.0
    # beyond the most expensive model the baseline line is extrapolated (slope 0.2 per unit cost)
    assert cascade_max_diff([4.0], [1.15], C2, Q2) == pytest.approx(0.05)


# --------------------------------------------------------------------------- exact oracle


def test_oracle_frontier_matches_brute_force():
    rng = np.random.default_rng(5)
    n, m = 3, 3
    Q, C = rng.random((n, m)), rng.random((n, m))
    pts = []
    for choice in itertools.product(range(m), repeat=n):
        pts.append((C[np.arange(n), choice].mean(), Q[np.arange(n), choice].mean()))
    pc, pq = np.array(pts).T
    fc, fq = oracle_frontier(Q, C)
    hc, hq = nondecreasing_convex_hull(pc, pq)
    a, b = pc.min(), pc.max()
    assert M._aiq_hull(fc, fq, a, b) == pytest.approx(aiq(pc, pq, a, b), abs=1e-12)
    assert fq[-1] == pytest.approx(Q.max(axis=1).mean())


# --------------------------------------------------------------------------- input errors


def test_nan_and_shape_errors_are_clear_value_errors():
    with pytest.raises(ValueError, match=r"qualities: 1 NaN or infinite value\(s\), first at index 1"):
        aiq([1, 2], [0.1, np.nan], 1, 2)
    with pytest.raises(ValueError, match="differ in length"):
        aiq([1, 2, 3], [0.1, 0.2], 1, 2)
    with pytest.raises(ValueError, match="same length"):
        pgr_curve([1, 2], [0, 1], [1])
    with pytest.raises(ValueError, match=">= 0"):
        oracle_frontier([[0.1, 0.2]], [[0.1, -1.0]])
    with pytest.raises(ValueError, match="empty"):
        aiq([], [], 0, 1)
    assert issubclass(EvaluationInputError, ValueError)
