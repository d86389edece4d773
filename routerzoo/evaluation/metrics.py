"""Routing metrics as pure numpy functions: AIQ, APGR, CPT, cascade AUC and their building blocks.

Every convention (hull, interpolation, extension beyond the data, tie-breaking, normalisation) is
stated in the docstrings and, with the differences from RouteLLM's, RouterBench's and
cascade-routing's own code, in ``docs/metrics.md``.

Arrays are batch-first: ``n`` prompts by ``m`` models. A *curve* is a set of (cost, quality) points,
cost in mean USD per prompt and quality the mean quality per prompt.
"""

from __future__ import annotations

import math

import numpy as np

from routerzoo.errors import UserError

__all__ = [
    "EvaluationInputError",
    "nondecreasing_convex_hull",
    "hull_value",
    "aiq",
    "pgr",
    "pgr_curve",
    "apgr",
    "apgr_routellm",
    "routellm_curve",
    "cpt",
    "cascade_auc",
    "cascade_max_diff",
    "oracle_frontier",
]


class EvaluationInputError(UserError, ValueError):
    """Bad input to an evaluation function (wrong shape, NaN, negative cost, unknown model).

    A :class:`ValueError` for library users and a :class:`~routerzoo.errors.UserError` for the CLI.
    """


# ---------------------------------------------------------------------------------------------
# validation helpers (shared with sweep.py and report.py)


def as_finite(x, name: str, *, ndim: int | None = None, nonnegative: bool = False) -> np.ndarray:
    """Return ``x`` as a float64 array, raising :class:`EvaluationInputError` on NaN/inf or bad rank."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EvaluationInputError(f"{name}: cannot be read as numbers ({e})") from None
    if ndim is not None and a.ndim != ndim:
        raise EvaluationInputError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")
    if a.size == 0:
        raise EvaluationInputError(f"{name}: is empty")
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = first[0] if len(first) == 1 else first
        raise EvaluationInputError(
            f"{name}: {int(bad.sum())} NaN or infinite value(s), first at index {where} "
            f"(value {a[first]}); drop or fill them before evaluating"
        )
    if nonnegative and (a < 0).any():
        first = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise EvaluationInputError(f"{name}: costs must be >= 0, found {a[first]} at index {first}")
    return a


def _points(costs, qualities) -> tuple[np.ndarray, np.ndarray]:
    c = as_finite(costs, "costs", ndim=1)
    q = as_finite(qualities, "qualities", ndim=1)
    if c.shape != q.shape:
        raise EvaluationInputError(f"costs and qualities differ in length: {c.shape[0]} vs {q.shape[0]}")
    return c, q


def _range(c_min, c_max) -> tuple[float, float]:
    a, b = float(c_min), float(c_max)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise EvaluationInputError(f"cost range must be finite, got [{a}, {b}]")
    if b < a:
        raise EvaluationInputError(f"c_max ({b}) is below c_min ({a})")
    return a, b


# ---------------------------------------------------------------------------------------------
# piecewise-linear curves


def _polyline_integral(xs: np.ndarray, ys: np.ndarray, a: float, b: float) -> float:
    """Exact integral over [a, b] of the polyline through (xs, ys), extended flat on both sides.

    ``xs`` must be sorted non-decreasing; repeated x values make a vertical step (the segment to
    the left uses the first point at that x, the segment to the right the last one).
    """
    if b <= a:
        return 0.0
    n = xs.shape[0]
    # right limit at a: the segment starting at the last point with x <= a
    i = int(np.searchsorted(xs, a, side="right"))
    ya = ys[0] if i == 0 else ys[-1] if i == n else _lerp(xs[i - 1], ys[i - 1], xs[i], ys[i], a)
    # left limit at b: the segment ending at the first point with x >= b
    j = int(np.searchsorted(xs, b, side="left"))
    yb = ys[0] if j == 0 else ys[-1] if j == n else _lerp(xs[j - 1], ys[j - 1], xs[j], ys[j], b)
    inside = (xs > a) & (xs < b)
    X = np.concatenate(([a], xs[inside], [b]))
    Y = np.concatenate(([ya], ys[inside], [yb]))
    return float(np.sum(np.diff(X) * (Y[1:] + Y[:-1])) / 2.0)


def _lerp(x0: float, y0: float, x1: float, y1: float, x: float) -> float:
    if x1 == x0:
        return float(y1)
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def nondecreasing_convex_hull(costs, qualities) -> tuple[np.ndarray, np.ndarray]:
    """RouterBench's non-decreasing convex hull of a set of (cost, quality) points.

    The upper concave hull of the points, from the cheapest point (the best one if several share
    the lowest cost) up to the highest-quality point (the cheapest one if several share the highest
    quality); the hull is read as flat beyond that point, so it never decreases. Collinear and
    dominated points are dropped; they do not change the hull as a function of cost.

    Mixing two router settings at random reaches any point on the segment between their points,
    which is why the hull, not the raw curve, is what a router can deliver.

    Args:
        costs: of shape (k,), mean cost per prompt of each point.
        qualities: of shape (k,), mean quality of each point.

    Returns:
        ``(hull_costs, hull_qualities)``, each of shape (h,), h <= k, costs strictly increasing
        and qualities strictly increasing (a single point when h == 1).
    """
    c, q = _points(costs, qualities)
    return _hull(c, q)


def _hull(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((-q, c))  # cost ascending, then quality descending
    c, q = c[order], q[order]
    keep = np.ones(c.shape[0], dtype=bool)
    keep[1:] = c[1:] != c[:-1]  # best quality per distinct cost
    c, q = c[keep].tolist(), q[keep].tolist()
    hc: list[float] = []
    hq: list[float] = []
    for x, y in zip(c, q, strict=True):
        # pop the last vertex while it lies on or below the chord from the one before it to (x, y)
        while len(hc) >= 2 and (hc[-1] - hc[-2]) * (y - hq[-2]) - (hq[-1] - hq[-2]) * (x - hc[-2]) >= 0:
            hc.pop()
            hq.pop()
        hc.append(x)
        hq.append(y)
    top = int(np.argmax(hq))  # first maximum: the cheapest of the best
    return np.asarray(hc[: top + 1]), np.asarray(hq[: top + 1])


def hull_value(hull_costs, hull_qualities, cost) -> np.ndarray | float:
    """R~(c): the hull interpolated linearly, flat at its first point's quality to the left of it and
    flat at its last (highest) point's quality to the right.

    Args:
        hull_costs: of shape (h,), increasing, as returned by :func:`nondecreasing_convex_hull`.
        hull_qualities: of shape (h,).
        cost: a scalar or array of costs.
    """
    return np.interp(cost, hull_costs, hull_qualities)


def aiq(costs, qualities, c_min, c_max, *, convention: str = "range") -> float:
    """Average Improvement in Quality (RouterBench) of a router's (cost, quality) points.

    ``convention="range"`` (ours, the paper's formula)::

        AIQ = 1 / (c_max - c_min) * integral from c_min to c_max of R~(c) dc

    with R~ the non-decreasing convex hull of the points (:func:`nondecreasing_convex_hull`),
    interpolated linearly, flat at its cheapest point's quality to the left of that point and flat at
    its highest quality to the right of its last point. ``[c_min, c_max]`` should be the range of the
    single models' mean costs, the same for every router compared. If ``c_max == c_min`` the AIQ is
    R~(c_min).

    ``convention="routerbench"`` reproduces RouterBench's code (``evaluation/AIQ.py``): the hull is
    extended flat to ``c_max`` (the largest cost among all compared routers' hulls; this hull's own
    largest cost if larger or if ``c_max`` is None), integrated by trapezoids from the hull's *own
    cheapest point* to ``c_max``, and divided by ``c_max`` itself (not by the range). ``c_min`` is
    ignored. Values are smaller than ours and depend on which routers are compared together.

    Args:
        costs: of shape (k,), mean cost per prompt of each router setting.
        qualities: of shape (k,), mean quality of each setting.
        c_min: left end of the integration range (mean USD per prompt).
        c_max: right end of the integration range.
        convention: ``"range"`` (default) or ``"routerbench"``.

    Returns:
        The AIQ, in quality units.
    """
    c, q = _points(costs, qualities)
    hc, hq = _hull(c, q)
    if convention == "routerbench":
        top = float(hc[-1]) if c_max is None else max(float(c_max), float(hc[-1]))
        if top <= 0:
            return float(hq[-1])
        return _polyline_integral(hc, hq, float(hc[0]), top) / top
    if convention != "range":
        raise EvaluationInputError(f"unknown AIQ convention {convention!r}; use 'range' or 'routerbench'")
    a, b = _range(c_min, c_max)
    return _aiq_hull(hc, hq, a, b)


def _aiq_hull(hc: np.ndarray, hq: np.ndarray, a: float, b: float) -> float:
    if b == a:
        return float(np.interp(a, hc, hq))
    return _polyline_integral(hc, hq, a, b) / (b - a)


# ---------------------------------------------------------------------------------------------
# two-model metrics (RouteLLM)


def pgr(quality, q_weak_mean: float, q_strong_mean: float) -> np.ndarray:
    """Performance Gap Recovered: ``(quality - q_weak_mean) / (q_strong_mean - q_weak_mean)``.

    Raises :class:`EvaluationInputError` when the two models' mean qualities are equal (PGR is
    undefined).
    """
    qw, qs = float(q_weak_mean), float(q_strong_mean)
    if qs == qw:
        raise EvaluationInputError(f"PGR is undefined: strong and weak mean quality are equal ({qs})")
    return (np.asarray(quality, dtype=np.float64) - qw) / (qs - qw)


def _pair(strong_score, quality_weak, quality_strong):
    s = as_finite(strong_score, "strong_score", ndim=1)
    qw = as_finite(quality_weak, "quality_weak", ndim=1)
    qs = as_finite(quality_strong, "quality_strong", ndim=1)
    if not (s.shape == qw.shape == qs.shape):
        raise EvaluationInputError(
            f"strong_score, quality_weak and quality_strong must have the same length, "
            f"got {s.shape[0]}, {qw.shape[0]}, {qs.shape[0]}"
        )
    return s, qw, qs


def pgr_curve(
    strong_score, quality_weak, quality_strong, *, ties: str = "average"
) -> tuple[np.ndarray, np.ndarray]:
    """The exact two-model threshold curve: quality against the share of strong-model calls.

    For every k = 0..n the k prompts with the highest ``strong_score`` go to the strong model, the
    others to the weak one; the point is ``(k / n, mean realised quality)``. Every threshold a
    router could use is one of these points.

    Ties in ``strong_score`` (a block of prompts no threshold can separate):

    - ``ties="average"`` (default): within a tied block the prompts sent to the strong model are a
      uniformly random subset; the curve gives the *expected* quality, which is linear in k across
      the block. Deterministic, and independent of row order (a constant score gives exactly the
      straight line from weak to strong, APGR 0.5).
    - ``ties="stable"``: a stable sort on descending score; among tied prompts the lower index goes
      to the strong model first.

    Args:
        strong_score: of shape (n,), higher means "send to the strong model" (e.g. predicted
            ``quality_strong - quality_weak`` or a win probability).
        quality_weak: of shape (n,), the weak model's realised quality per prompt.
        quality_strong: of shape (n,), the strong model's realised quality per prompt.
        ties: ``"average"`` or ``"stable"``.

    Returns:
        ``(strong_share, quality)``, each of shape (n + 1,); ``strong_share`` is ``k / n``.
    """
    s, qw, qs = _pair(strong_score, quality_weak, quality_strong)
    n = s.shape[0]
    order = np.argsort(-s, kind="stable")
    gain = (qs - qw)[order]
    cum = np.concatenate(([0.0], np.cumsum(gain)))
    if ties == "average":
        ss = s[order]
        ends = np.concatenate(([0], np.nonzero(ss[1:] != ss[:-1])[0] + 1, [n]))
        cum = np.interp(np.arange(n + 1), ends, cum[ends])
    elif ties != "stable":
        raise EvaluationInputError(f"unknown ties mode {ties!r}; use 'average' or 'stable'")
    share = np.arange(n + 1) / n
    return share, (qw.sum() + cum) / n


def apgr(strong_share, quality, q_weak_mean: float, q_strong_mean: float) -> float:
    """Average Performance Gap Recovered: the integral of PGR over the strong-call share, 0 to 1.

    ``APGR = integral_0^1 PGR(c) dc`` by trapezoids over the given points (sorted by share, stable),
    with ``PGR = (q - q_weak_mean) / (q_strong_mean - q_weak_mean)``. On the exact curve of
    :func:`pgr_curve` the trapezoids are the exact integral of the piecewise-linear curve.

    Args:
        strong_share: of shape (k,), share of calls to the strong model; must span [0, 1].
        quality: of shape (k,), mean quality at each share.
        q_weak_mean: mean quality of the weak model alone (share 0).
        q_strong_mean: mean quality of the strong model alone (share 1).
    """
    x, y = _points(strong_share, quality)
    order = np.argsort(x, kind="stable")
    x, y = x[order], pgr(y[order], q_weak_mean, q_strong_mean)
    if abs(x[0]) > 1e-12 or abs(x[-1] - 1.0) > 1e-12:
        raise EvaluationInputError(f"strong_share must span [0, 1], got [{x[0]}, {x[-1]}]")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


def routellm_curve(strong_score, quality_weak, quality_strong, num_results: int = 10):
    """RouteLLM's threshold points (``evals/benchmarks.py``): thresholds at the ``num_results + 1``
    edges of equal-count quantile bins of the score (``pd.qcut(score, num_results, retbins=True)``,
    i.e. ``np.quantile(score, linspace(0, 1, num_results + 1))``); at every edge but the last a prompt
    goes to the strong model if ``score >= threshold``, at the last if ``score > threshold``.

    Unlike ``pd.qcut`` (which raises on repeated edges) repeated edges are kept; they give repeated
    points that add nothing to the integral.

    Returns:
        ``(strong_share, quality)`` of shape (num_results + 1,), sorted by share (stable).
    """
    s, qw, qs = _pair(strong_score, quality_weak, quality_strong)
    if int(num_results) < 1:
        raise EvaluationInputError(f"num_results must be >= 1, got {num_results}")
    edges = np.quantile(s, np.linspace(0.0, 1.0, int(num_results) + 1))
    sel = s[None, :] >= edges[:, None]
    sel[-1] = s > edges[-1]
    share = sel.mean(axis=1)
    quality = np.where(sel, qs[None, :], qw[None, :]).mean(axis=1)
    order = np.argsort(share, kind="stable")
    return share[order], quality[order]


def apgr_routellm(strong_score, quality_weak, quality_strong, num_results: int = 10) -> float:
    """APGR as RouteLLM's ``evaluate.py`` computes it, on the points of :func:`routellm_curve`.

    ``(AUC_router - AUC_weak) / (AUC_strong - AUC_weak)`` with trapezoids over the 11 (for
    ``num_results=10``) threshold points; ``q_weak``/``q_strong`` are the two models' mean qualities
    on all prompts. This equals the trapezoid integral of PGR over those points; it differs from
    :func:`apgr` on :func:`pgr_curve` because 10 bins sample the curve coarsely (chords under a
    concave curve: usually a little lower).
    """
    s, qw, qs = _pair(strong_score, quality_weak, quality_strong)
    share, quality = routellm_curve(s, qw, qs, num_results)
    return apgr(share, quality, qw.mean(), qs.mean())


def cpt(strong_share, pgr_values, target: float) -> float:
    """Call-Performance Threshold: the smallest strong-call share at which PGR reaches ``target``.

    Scans the points in order of increasing share (stable sort) and stops at the first point with
    ``PGR >= target``; if an earlier point exists, the share is interpolated linearly within the
    segment that crosses ``target``. No monotonicity is assumed (RouteLLM's ``np.interp`` assumes
    PGR rises with share; on a non-monotone curve it can return a later crossing or nonsense).

    Args:
        strong_share: of shape (k,), shares of strong-model calls in [0, 1].
        pgr_values: of shape (k,), PGR at each share (see :func:`pgr`).
        target: PGR to reach, e.g. 0.5 for CPT(50%).

    Returns:
        The share in [0, 1], or NaN if the curve never reaches ``target``.
    """
    x, y = _points(strong_share, pgr_values)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    return first_crossing(x, y, target)


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The x at which the curve (x, y), in x order, first reaches ``y >= target``, linearly
    interpolated from the point before (NaN if it never does)."""
    hit = np.nonzero(y >= target)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    x0, y0, x1, y1 = x[i - 1], y[i - 1], x[i], y[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


# ---------------------------------------------------------------------------------------------
# cascade-routing (ETH) metrics


def cascade_auc(costs, qualities, c_min, c_max, q_left) -> float:
    """Area under the quality-cost curve as cascade-routing computes it (``selection/utils.py``,
    ``area_under_curve``), normalised by the cost range.

    The curve is the raw points (no hull), duplicates removed and sorted by (cost, quality),
    interpolated linearly. Right of the last point it is flat at that point's quality. If the first
    point costs more than ``c_min`` the point ``(c_min, q_left)`` is added, so the curve rises
    linearly from it to the first point. The integral over ``[c_min, c_max]`` is divided by
    ``c_max - c_min``; when they are equal the curve's value at ``c_min`` is returned.

    Conventions: ``[c_min, c_max]`` is [cheapest, most expensive] single-model mean cost. Their code
    sets ``q_left`` to the *lowest* single-model quality; we pass the cheapest model's quality (the
    ANCHORS definition); the two agree when the cheapest model is also the worst. Their code would
    extrapolate the last segment linearly if every point were cheaper than ``c_min``; we keep it flat.

    Args:
        costs: of shape (k,), mean cost per prompt of each point.
        qualities: of shape (k,).
        c_min: cheapest single model's mean cost.
        c_max: most expensive single model's mean cost.
        q_left: quality anchoring the curve at ``c_min``.
    """
    c, q = _points(costs, qualities)
    a, b = _range(c_min, c_max)
    q_left = float(q_left)
    pts = np.unique(np.stack([c, q], axis=1), axis=0)  # sorted by cost, then quality
    xs, ys = pts[:, 0], pts[:, 1]
    if xs[0] > a:
        xs = np.concatenate(([a], xs))
        ys = np.concatenate(([q_left], ys))
    if b == a:
        i = int(np.searchsorted(xs, a, side="right"))
        return float(
            ys[0] if i == 0 else ys[-1] if i == xs.shape[0] else _lerp(xs[i - 1], ys[i - 1], xs[i], ys[i], a)
        )
    return _polyline_integral(xs, ys, a, b) / (b - a)


def cascade_max_diff(costs, qualities, model_costs, model_qualities) -> float:
    """cascade-routing's ``max_diff``: the largest quality gain of any curve point over the baseline
    line joining the single models, and 0 if none is above it.

    The baseline is the single models' non-decreasing convex hull (their ``remove_redundant_models``
    drops models under a chord or dominated by a cheaper, better one), interpolated linearly and,
    as in their ``interp1d(..., fill_value="extrapolate")``, *extrapolated linearly* beyond its first
    and last model (constant if the hull is one model).

    Args:
        costs, qualities: of shape (k,), the router's points.
        model_costs, model_qualities: of shape (m,), the single models' mean cost and quality.
    """
    c, q = _points(costs, qualities)
    mc, mq = _points(model_costs, model_qualities)
    hc, hq = _hull(mc, mq)
    base = np.interp(c, hc, hq)
    if hc.shape[0] >= 2:
        lo, hi = c < hc[0], c > hc[-1]
        base[lo] = hq[0] + (c[lo] - hc[0]) * (hq[1] - hq[0]) / (hc[1] - hc[0])
        base[hi] = hq[-1] + (c[hi] - hc[-1]) * (hq[-1] - hq[-2]) / (hc[-1] - hc[-2])
    return float(max(0.0, float(np.max(q - base))))


# ---------------------------------------------------------------------------------------------
# the exact oracle


def oracle_frontier(true_quality, true_cost) -> tuple[np.ndarray, np.ndarray]:
    """The exact non-decreasing convex hull of what a per-prompt oracle can reach.

    Each prompt contributes the non-decreasing concave hull of its own m (cost, quality) points; the
    mean over prompts of such concave functions is traced by merging all prompts' hull segments in
    order of decreasing slope (quality per USD). The result is the limit of the oracle's cost-weight
    sweep (:func:`routerzoo.evaluation.sweep.oracle_points`) on an infinitely fine grid, so the
    oracle AIQ of a finite grid is at most the AIQ of this curve.

    Args:
        true_quality: of shape (n, m).
        true_cost: of shape (n, m).

    Returns:
        ``(costs, qualities)``, each of shape (s + 1,) with s the total number of hull segments;
        costs and qualities increase, slopes decrease (a concave curve, its own hull).
    """
    Q = as_finite(true_quality, "true_quality", ndim=2)
    C = as_finite(true_cost, "true_cost", ndim=2, nonnegative=True)
    if Q.shape != C.shape:
        raise EvaluationInputError(f"true_quality {Q.shape} and true_cost {C.shape} differ in shape")
    segs, c0, q0 = _oracle_segments(Q, C)
    n = Q.shape[0]
    order = np.argsort(-segs[:, 2], kind="stable")
    dc = segs[order, 0] / n
    dq = segs[order, 1] / n
    cost = c0.mean() + np.concatenate(([0.0], np.cumsum(dc)))
    qual = q0.mean() + np.concatenate(([0.0], np.cumsum(dq)))
    return cost, qual


def _oracle_segments(Q: np.ndarray, C: np.ndarray):
    """Per prompt: start point (cheapest, best of the cheapest) and hull segments (dc, dq, slope, i)."""
    n = Q.shape[0]
    c0 = np.empty(n)
    q0 = np.empty(n)
    rows: list[tuple[float, float, float, int]] = []
    for i in range(n):
        hc, hq = _hull(C[i], Q[i])
        c0[i], q0[i] = hc[0], hq[0]
        dcs, dqs = np.diff(hc), np.diff(hq)
        for dc_, dq_ in zip(dcs.tolist(), dqs.tolist(), strict=True):
            rows.append((dc_, dq_, dq_ / dc_, i))
    segs = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return segs, c0, q0
