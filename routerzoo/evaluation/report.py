"""One JSON-able evaluation report from predictions and the true outcome table, and a text table.

``evaluate_predictions`` sweeps the cost weight, computes every metric of ``docs/metrics.md`` against
the single models and the oracle, and (optionally) bootstrap confidence intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from routerzoo.evaluation import metrics as M
from routerzoo.evaluation.metrics import EvaluationInputError
from routerzoo.evaluation.sweep import (
    _check_truth,
    _matrix,
    _pred_cost,
    _weights,
    cost_weight_grid,
    decisions,
    realised,
)

__all__ = ["evaluate_predictions", "GapScorer", "format_table", "REPORT_VERSION"]

REPORT_VERSION = 1


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _spread(a: np.ndarray) -> float:
    r = float(np.ptp(a))
    return r if r > 0 else 1.0


def _gap(router: float, zero: float, oracle: float) -> float:
    den = oracle - zero
    if not abs(den) > 1e-12 * max(1.0, abs(oracle)):
        return float("nan")
    return (router - zero) / den


def _hull_aiq(c: np.ndarray, q: np.ndarray, a: float, b: float) -> float:
    hc, hq = M._hull(c, q)
    return M._aiq_hull(hc, hq, a, b)


def _cost_to_reach(c: np.ndarray, q: np.ndarray, target: float) -> float:
    """Cheapest cost at which the hull of (c, q) reaches quality ``target`` (NaN if never)."""
    return M.first_crossing(*M._hull(c, q), target)


def _curve(w: np.ndarray, c: np.ndarray, q: np.ndarray) -> list[dict]:
    return [
        {"cost_weight": a, "cost": b, "quality": d}
        for a, b, d in zip(w.tolist(), c.tolist(), q.tolist(), strict=True)
    ]


@dataclass
class _Sweep:
    """Realised per-prompt cost and quality of every decision on the λ grids.

    Attributes:
        tq, tc: (n, m) true quality and cost.
        w_r, w_o: the router's and the oracle's cost-weight grids, (k,) and (k_o,).
        rc_r, rq_r: (k, n) realised cost and quality of the router's decisions.
        rc_o, rq_o: (k_o, n) the same for the oracle.
        D_r: (k, n) the router's chosen model indices.
    """

    tq: np.ndarray
    tc: np.ndarray
    w_r: np.ndarray
    w_o: np.ndarray
    rc_r: np.ndarray
    rq_r: np.ndarray
    rc_o: np.ndarray
    rq_o: np.ndarray
    D_r: np.ndarray


def _sweep(pq: np.ndarray, pc: np.ndarray, tq: np.ndarray, tc: np.ndarray, n_points: int, cost_weights) -> _Sweep:
    """Decide every prompt at every λ for the router (its predictions) and the oracle (the truth)."""
    w_r = (
        cost_weight_grid(pc, n_points, quality_range=_spread(pq))
        if cost_weights is None
        else _weights(cost_weights)
    )
    w_o = cost_weight_grid(tc, n_points, quality_range=_spread(tq))
    D_r = decisions(pq, pc, w_r)
    rc_r, rq_r = realised(D_r, tq, tc)
    rc_o, rq_o = realised(decisions(tq, tc, w_o), tq, tc)
    return _Sweep(tq, tc, w_r, w_o, rc_r, rq_r, rc_o, rq_o, D_r)


def _stats(sw: _Sweep, wt: np.ndarray) -> dict:
    """All curve-based statistics for prompt weights ``wt`` of shape (n,), summing to 1.

    Decisions do not depend on the other prompts, so a bootstrap resample only re-weights them.
    """
    sc, sq = sw.tc.T @ wt, sw.tq.T @ wt
    a, b = float(sc.min()), float(sc.max())
    c_r, q_r = sw.rc_r @ wt, sw.rq_r @ wt
    c_o, q_o = sw.rc_o @ wt, sw.rq_o @ wt
    aiq_r, aiq_z, aiq_o = _hull_aiq(c_r, q_r, a, b), _hull_aiq(sc, sq, a, b), _hull_aiq(c_o, q_o, a, b)
    return {
        "sc": sc, "sq": sq, "a": a, "b": b, "c_r": c_r, "q_r": q_r, "c_o": c_o, "q_o": q_o,
        "aiq_r": aiq_r, "aiq_z": aiq_z, "aiq_o": aiq_o, "gap": _gap(aiq_r, aiq_z, aiq_o),
    }  # fmt: skip


def _curve_report(sw: _Sweep, s: dict, names: list[str]) -> dict:
    """The report's curve, single-model, oracle and headline entries from the full-sample stats."""
    n, m = sw.tq.shape
    sc, sq, a, b = s["sc"], s["sq"], s["a"], s["b"]
    best = int(np.lexsort((sc, -sq))[0])  # highest quality, then cheapest, then first
    cheapest = int(np.lexsort((-sq, sc))[0])  # lowest cost, then best, then first
    fc, fq = M.oracle_frontier(sw.tq, sw.tc)
    return {
        "version": REPORT_VERSION,
        "models": names,
        "n_prompts": n,
        "cost_range": [a, b],
        "curve": _curve(sw.w_r, s["c_r"], s["q_r"]),
        "model_share": [(np.bincount(d, minlength=m) / n).tolist() for d in sw.D_r],
        "single_models": [
            {"name": nm, "quality": float(q), "cost": float(c)}
            for nm, q, c in zip(names, sq, sc, strict=True)
        ],
        "best_single": {"name": names[best], "quality": float(sq[best]), "cost": float(sc[best])},
        "oracle": {
            "quality": float(s["q_o"][0]),
            "cost": float(s["c_o"][0]),
            "curve": _curve(sw.w_o, s["c_o"], s["q_o"]),
            "aiq": s["aiq_o"],
            "aiq_exact": M._aiq_hull(fc, fq, a, b) if fc.shape[0] > 0 else None,
        },
        "aiq": {"router": s["aiq_r"], "zero_router": s["aiq_z"], "oracle": s["aiq_o"]},
        "gap_closed": _num(s["gap"]),
        "cascade_auc": M.cascade_auc(s["c_r"], s["q_r"], a, b, float(sq[cheapest])),
        "cascade_max_diff": M.cascade_max_diff(s["c_r"], s["q_r"], sc, sq),
        "max_quality": float(s["q_r"].max()),
        "cost_to_match_best_single": {
            "best_single": float(sc[best]),
            "router": _num(_cost_to_reach(s["c_r"], s["q_r"], float(sq[best]))),
            "oracle": _num(_cost_to_reach(s["c_o"], s["q_o"], float(sq[best]))),
        },
    }


def _bootstrap(sw: _Sweep, B: int, seed: int) -> dict:
    """95% percentile intervals of the router's AIQ and the gap closed over B resamples of prompts."""
    n = sw.tq.shape[0]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=B) / n  # (B, n) resampling weights
    aiqs, gaps = np.empty(B), np.empty(B)
    for i in range(B):
        r = _stats(sw, counts[i])
        aiqs[i], gaps[i] = r["aiq_r"], r["gap"]
    return {"n": B, "seed": int(seed), "aiq_router": _ci(aiqs), "gap_closed": _ci(gaps)}


class GapScorer:
    """The report's ``gap_closed`` of many predictions against one outcome table, fast.

    ``--router auto`` scores hundreds of weighted combinations of candidates' predictions on the
    same prompts: the oracle's and the zero router's curves depend only on the outcomes, so they are
    computed once here, and the router's decisions at every λ of its grid are taken in one
    vectorised pass (the same rule as :func:`routerzoo.routers.policies.argmax.decide`, ties to the
    cheaper predicted cost, then the lower index). Equal to ``evaluate_predictions(...)["gap_closed"]``.

    Args:
        true_quality: (n, m) realised quality, every outcome observed.
        true_cost: (n, m) realised USD cost.
    """

    def __init__(self, true_quality: np.ndarray, true_cost: np.ndarray, n_points: int = 64):
        self.tq = np.asarray(true_quality, dtype=np.float64)
        self.tc = np.asarray(true_cost, dtype=np.float64)
        self.n_points = n_points
        n = len(self.tq)
        self.wt = np.full(n, 1.0 / max(n, 1))
        sc, sq = self.tc.T @ self.wt, self.tq.T @ self.wt
        self.a, self.b = float(sc.min()), float(sc.max())
        w_o = cost_weight_grid(self.tc, n_points, quality_range=_spread(self.tq))
        rc_o, rq_o = realised(decisions(self.tq, self.tc, w_o), self.tq, self.tc)
        self.aiq_z = _hull_aiq(sc, sq, self.a, self.b)
        self.aiq_o = _hull_aiq(rc_o @ self.wt, rq_o @ self.wt, self.a, self.b)

    def __call__(self, pred_quality: np.ndarray, pred_cost: np.ndarray) -> float | None:
        """Gap closed of (n, m) predictions; None where the oracle closes no gap."""
        from routerzoo.routers.policies.argmax import TIE_TOLERANCE

        pq, pc = np.asarray(pred_quality, dtype=np.float64), np.asarray(pred_cost, dtype=np.float64)
        w_r = cost_weight_grid(pc, self.n_points, quality_range=_spread(pq))
        rows = np.arange(len(pq))
        c_r, q_r = np.empty(len(w_r)), np.empty(len(w_r))
        for lo in range(0, len(w_r), 16):  # 16 λ at a time bounds memory at 16 × n × m floats
            utility = pq[None] - w_r[lo:lo + 16, None, None] * pc[None]  # λ = 0 leaves pq exactly
            best = utility.max(axis=2, keepdims=True)
            utility -= best - TIE_TOLERANCE * np.maximum(1.0, np.abs(best))  # >= 0: tied with the best
            d = np.argmin(np.where(utility >= 0, pc[None], np.inf), axis=2)  # (k, n)
            c_r[lo:lo + 16] = self.tc[rows, d] @ self.wt
            q_r[lo:lo + 16] = self.tq[rows, d] @ self.wt
        return _num(_gap(_hull_aiq(c_r, q_r, self.a, self.b), self.aiq_z, self.aiq_o))


def evaluate_predictions(
    pred_quality,
    pred_cost,
    true_quality,
    true_cost,
    models: Sequence[str],
    *,
    strong: str | None = None,
    weak: str | None = None,
    n_points: int = 64,
    bootstrap: int = 0,
    seed: int = 0,
    cost_weights=None,
) -> dict:
    """Evaluate a router's per-prompt predictions against the true outcome table.

    Args:
        pred_quality: of shape (n, m), the router's predicted quality per prompt and model.
        pred_cost: of shape (n, m), or (m,) for one price per model, predicted USD per prompt.
        true_quality: of shape (n, m), realised quality.
        true_cost: of shape (n, m), realised USD per prompt (>= 0).
        models: the m model names, in column order.
        strong, weak: two model names; when both are given the two-model (RouteLLM) metrics are
            added, with the router's strong score ``pred_quality[:, strong] - pred_quality[:, weak]``.
        n_points: length of the cost-weight grids (:func:`~routerzoo.evaluation.sweep.cost_weight_grid`).
        bootstrap: number of bootstrap resamples of the prompts (0: none) for 95% percentile
            intervals of the router's AIQ and the gap closed.
        seed: seed of the bootstrap.
        cost_weights: the router's cost weights; by default a grid from ``pred_cost``.

    Returns:
        A JSON-able dict (undefined values are None); keys are described in ``docs/metrics.md``.
        ``curve`` holds exactly ``{"cost_weight", "cost", "quality"}`` per point, so
        ``aiq([p["cost"] ...], [p["quality"] ...], *report["cost_range"])`` recomputes ``aiq.router``.
    """
    tq, tc = _check_truth(true_quality, true_cost)
    n, m = tq.shape
    names = [str(x) for x in models]
    if len(names) != m:
        raise EvaluationInputError(f"models: {len(names)} names for {m} columns")
    if len(set(names)) != m:
        raise EvaluationInputError(f"models: names must be unique, got {names}")
    pq = _matrix(pred_quality, "pred_quality")
    if pq.shape != tq.shape:
        raise EvaluationInputError(f"pred_quality {pq.shape} and true_quality {tq.shape} differ in shape")
    pc = _pred_cost(pred_cost, pq.shape)
    if (strong is None) != (weak is None):
        raise EvaluationInputError("give both strong and weak model names, or neither")
    if int(bootstrap) < 0:
        raise EvaluationInputError(f"bootstrap must be >= 0, got {bootstrap}")

    sw = _sweep(pq, pc, tq, tc, n_points, cost_weights)
    report = _curve_report(sw, _stats(sw, np.full(n, 1.0 / n)), names)
    if strong is not None:
        report.update(_two_model(pq, tq, names, str(strong), str(weak)))
    if int(bootstrap) > 0:
        report["bootstrap"] = _bootstrap(sw, int(bootstrap), seed)
    return report


def _ci(x: np.ndarray) -> list[float | None]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return [None, None]
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def _two_model(pq: np.ndarray, tq: np.ndarray, names: list[str], strong: str, weak: str) -> dict:
    for role, nm in (("strong", strong), ("weak", weak)):
        if nm not in names:
            raise EvaluationInputError(f"{role} model {nm!r} is not one of the models {names}")
    if strong == weak:
        raise EvaluationInputError(f"strong and weak are the same model {strong!r}")
    i, j = names.index(strong), names.index(weak)
    score = pq[:, i] - pq[:, j]
    q_s, q_w = float(tq[:, i].mean()), float(tq[:, j].mean())
    out: dict = {"strong": strong, "weak": weak, "quality_strong": q_s, "quality_weak": q_w}
    if q_s == q_w:
        return out | {k: None for k in ("apgr", "apgr_routellm", "cpt20", "cpt50", "cpt80")}
    share, quality = M.pgr_curve(score, tq[:, j], tq[:, i])
    p = M.pgr(quality, q_w, q_s)
    out["apgr"] = M.apgr(share, quality, q_w, q_s)
    out["apgr_routellm"] = M.apgr_routellm(score, tq[:, j], tq[:, i])
    for t in (20, 50, 80):
        out[f"cpt{t}"] = _num(M.cpt(share, p, t / 100))
    return out


# ---------------------------------------------------------------------------------------------
# text table


def _fmt(x, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _row_name(r: dict) -> str:
    """``name``; else ``router`` if a string, or its ``kind`` if a dict (as the runner writes it)."""
    if "name" in r:
        return str(r["name"])
    router = r.get("router")
    if isinstance(router, dict):
        return str(router.get("name", router.get("kind", "?")))
    return "?" if router is None else str(router)


def format_table(rows: list[dict]) -> str:
    """A plain-text, column-aligned table of reports, one row per router.

    Args:
        rows: reports from :func:`evaluate_predictions`, each with a ``"name"`` key naming the router
            (else ``"router"``: a string, or a dict whose ``"kind"`` is shown).

    Columns: router, AIQ (with its bootstrap 95% interval when present), gap closed, zero-router
    AIQ, best single model and its quality, the router's max quality, oracle AIQ and quality, and
    APGR / CPT(50%) when any row has them.
    """
    if not rows:
        return "(no results)"
    has_ci = any("bootstrap" in r for r in rows)
    has_pair = any(r.get("apgr") is not None for r in rows)
    has_prefs = any(r.get("pairs") for r in rows)
    header = ["router", "AIQ"]
    if has_ci:
        header.append("AIQ 95% CI")
    header += ["gap closed", "zero AIQ", "best single", "best q", "max q", "oracle AIQ", "oracle q"]
    if has_pair:
        header += ["APGR", "CPT50"]
    if has_prefs:
        header += ["pairs", "pair acc", "pair log-loss"]
    table = [header]
    for r in rows:
        aiq = r.get("aiq", {})
        best = r.get("best_single", {})
        oracle = r.get("oracle", {})
        line = [_row_name(r), _fmt(aiq.get("router"))]
        if has_ci:
            ci = r.get("bootstrap", {}).get("aiq_router", [None, None])
            line.append(f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci[0] is not None else "-")
        gap = r.get("gap_closed")
        line += [
            "-" if gap is None else f"{round(100 * gap, 1) + 0.0:.1f}%",  # + 0.0: no "-0.0%"
            _fmt(aiq.get("zero_router")),
            str(best.get("name", "-")),
            _fmt(best.get("quality")),
            _fmt(r.get("max_quality")),
            _fmt(aiq.get("oracle")),
            _fmt(oracle.get("quality")),
        ]
        if has_pair:
            line += [_fmt(r.get("apgr")), _fmt(r.get("cpt50"), 3)]
        if has_prefs:
            pairs = r.get("pairs") or {}
            line += [_fmt(pairs.get("n_pairs")), _fmt(pairs.get("accuracy")), _fmt(pairs.get("log_loss"))]
        table.append(line)
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]

    def render(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    lines = [render(header), "  ".join("-" * w for w in widths)]
    lines += [render(row) for row in table[1:]]
    return "\n".join(lines)


def summary_metrics(report: dict) -> dict:
    """The headline numbers of a report, flat, for MLflow metrics and tables."""
    out: dict = {"n_prompts": report.get("n_prompts")}
    if "aiq" in report:
        out.update({
            "aiq": report["aiq"]["router"],
            "aiq_zero_router": report["aiq"]["zero_router"],
            "aiq_oracle": report["aiq"]["oracle"],
            "gap_closed": report["gap_closed"],
            "best_single_quality": report["best_single"]["quality"],
            "max_quality": report.get("max_quality"),
        })
    for key in ("apgr", "apgr_routellm", "cpt50", "cpt80", "cascade_auc"):
        if report.get(key) is not None:
            out[key] = report[key]
    for key in ("auroc", "deferral_auc", "random_auc", "oracle_auc", "n_answers"):  # deferral scorers
        if report.get(key) is not None:
            out[key] = report[key]
    point = report.get("operating_point") or report  # sequential policies: their own point
    for key in ("quality", "cost", "calls_per_prompt"):
        if isinstance(point.get(key), (int, float)) and not isinstance(point.get(key), bool):
            out[key] = point[key]
    pairs = report.get("pairs")
    if pairs:
        out.update({"pair_accuracy": pairs.get("accuracy"), "pair_log_loss": pairs.get("log_loss"), "n_pairs": pairs.get("n_pairs")})
    return out
