"""Evaluate sequential policies (cascades) from their own decisions on a benchmark table.

A batch router's curve comes from one set of predictions swept over λ (``report.py``). A cascade
has no such sweep: what it costs depends on which answers it saw and rejected. So it is *run*,
through :class:`~routerzoo.routers.policies.clients.OfflineClient` (answers, logprobs, costs and
qualities looked up in the table), once per threshold, and each run's realised mean cost and quality
is one point of its curve. The report then compares that curve with the single models and the
oracle, with the metrics of ``docs/metrics.md``.

Partial tables: a prompt is *scored* at a threshold when every call the policy made for it there
has a recorded outcome; otherwise it is *unscored* (``n_unscored``) and left out of that point's
means. Which prompts are scored can change with the threshold (a high threshold reaches models a low
one never calls), so on a partial table the points average over slightly different prompt sets; on
a complete table every prompt is scored at every threshold.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from routerzoo.evaluation import metrics as M
from routerzoo.evaluation.metrics import EvaluationInputError
from routerzoo.routers.policies.argmax import decide as argmax_decide
from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.routers.policies.clients import OfflineClient

__all__ = ["run_offline", "cascade_curve", "evaluate_sequential"]


def _num(x) -> float | None:
    """A JSON-safe float: None, NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def run_offline(policy, matrix) -> dict[str, np.ndarray]:
    """Run a sequential policy on every prompt of a benchmark table, answers looked up in the table.

    Args:
        policy: a :class:`~routerzoo.routers.policies.base.SequentialPolicy`.
        matrix: an :class:`~routerzoo.data.matrix.OutcomeMatrix`; its prompts are answered by an
            :class:`~routerzoo.routers.policies.clients.OfflineClient` over it.

    Returns:
        Per-prompt arrays, each of shape (n,):

        - ``cost``: summed USD cost of every call made (NaN when unscored);
        - ``quality``: true quality of the answer returned (NaN when unscored);
        - ``known``: bool, every call had a recorded outcome (the prompt is scored);
        - ``n_calls``: int, calls made (including the one that had no outcome);
        - ``model``: int, column in ``matrix.models`` of the model whose answer was returned
          (-1 when unscored).

    The offline client finds prompts by their text; if two rows share a text, both are answered from
    the first one's outcomes (a warning says how many).
    """
    prompts = list(matrix.prompts)
    dup = len(prompts) - len(set(prompts))
    if dup:
        warnings.warn(
            f"{dup} prompt text(s) repeat in the table; the offline client answers each repeat from the "
            "first row with that text",
            stacklevel=2,
        )
    client = OfflineClient(matrix)
    traces = policy.run(prompts, client)
    n = len(prompts)
    if len(traces) != n:
        raise EvaluationInputError(f"the policy returned {len(traces)} traces for {n} prompts")
    col = {m: j for j, m in enumerate(matrix.models)}
    cost = np.full(n, np.nan)
    quality = np.full(n, np.nan)
    known = np.zeros(n, dtype=bool)
    n_calls = np.zeros(n, dtype=np.int64)
    model = np.full(n, -1, dtype=np.int64)
    for i, t in enumerate(traces):
        n_calls[i] = len(t.calls)
        q = None if t.completion is None else getattr(t.completion, "quality", None)
        if not t.known or q is None or not t.calls:
            continue
        known[i] = True
        cost[i] = t.cost
        quality[i] = float(q)
        model[i] = col[t.model]
    return {"cost": cost, "quality": quality, "known": known, "n_calls": n_calls, "model": model}


def _check_chain(chain: Sequence[str], matrix) -> list[str]:
    chain = CascadeConfig(chain=list(chain), thresholds=0.0).chain  # empty / duplicates -> ConfigError
    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise EvaluationInputError(
            f"chain model(s) {missing} are not in the table; its models: {list(matrix.models)}"
        )
    return chain


def _stage_scores(scorer, chain: list[str], matrix) -> np.ndarray:
    """The scorer's scores of every recorded answer of every stage but the last: (k,) flat."""
    out = []
    for model in chain[:-1]:
        j = matrix.models.index(model)
        rows = np.flatnonzero(~np.isnan(matrix.quality[:, j]))
        if rows.size == 0:
            continue
        resp = [None if matrix.responses is None else matrix.responses[i, j] for i in rows]
        lps = None
        if matrix.token_logprobs is not None:
            # as the offline client passes them, so the grid matches what the cascade will see
            lps = [
                None
                if matrix.token_logprobs[i, j] is None
                else np.asarray(matrix.token_logprobs[i, j], dtype=np.float64)
                for i in rows
            ]
        out.append(np.asarray(scorer.predict([matrix.prompts[i] for i in rows], resp, lps), dtype=np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def threshold_grid(scores: np.ndarray, n_points: int = 64) -> np.ndarray:
    """Thresholds spanning "accept every first answer" to "always escalate to the last stage".

    ``[lo, quantiles of the finite scores at linspace(0, 1, n_points - 2), hi]``, sorted, repeats
    dropped, with ``lo = min(0, min score)`` (every score passes) and ``hi`` the next float above
    ``max(1, max score)`` (no score passes). Quantile thresholds sit on observed scores, so each one
    separates the prompts at or above it from those below (acceptance is ``score >= threshold``).

    Args:
        scores: (k,) deferral scores of the non-last stages' answers.
        n_points: at most this many thresholds, >= 3.

    Returns:
        (p,) increasing thresholds, p <= n_points.
    """
    if int(n_points) < 3:
        raise EvaluationInputError(f"n_points must be >= 3, got {n_points}")
    s = scores[np.isfinite(scores)]
    smin = float(s.min()) if s.size else 0.0
    smax = float(s.max()) if s.size else 1.0
    lo = min(0.0, smin)
    hi = float(np.nextafter(max(1.0, smax), np.inf))
    inner = np.quantile(s, np.linspace(0.0, 1.0, int(n_points) - 2)) if s.size else np.zeros(0)
    return np.unique(np.concatenate(([lo], inner, [hi])))


def cascade_curve(scorer, chain: Sequence[str], matrix, thresholds=None, n_points: int = 64) -> list[dict]:
    """Run a cascade at every threshold of a grid; one (cost, quality) point each.

    Every point is a real :class:`~routerzoo.routers.policies.cascade.CascadePolicy` run (one shared
    threshold for all stages) through the offline client, so the curve is what the policy itself
    does, stage by stage, with the costs of every call it made (rejected answers included).

    Args:
        scorer: the :class:`~routerzoo.routers.deferral.base.DeferralScorer` the cascade thresholds.
        chain: the models in calling order.
        matrix: the :class:`~routerzoo.data.matrix.OutcomeMatrix` to answer from (responses and
            token logprobs as the scorer needs them).
        thresholds: the thresholds to run, any order; by default :func:`threshold_grid` of the
            scorer's scores of the table's recorded answers of every stage but the last (a single
            threshold, 0, for a one-model chain).
        n_points: size of the default grid.

    Returns:
        Points sorted by threshold (so, on a complete table, by non-decreasing cost), each
        ``{"threshold", "cost", "quality", "n_scored", "n_unscored", "calls_per_prompt",
        "deferral_rate"}``: mean USD cost and mean quality over the scored prompts (None when none
        is scored); ``calls_per_prompt`` the mean number of calls over the scored prompts;
        ``deferral_rate[k]`` (one per stage but the last) the share of the scored prompts reaching
        stage k that stage k escalated (None when none reached it).
    """
    chain = _check_chain(chain, matrix)
    if thresholds is None:
        grid = (
            np.array([0.0])
            if len(chain) == 1
            else threshold_grid(_stage_scores(scorer, chain, matrix), n_points)
        )
    else:
        grid = np.unique(
            M.as_finite(np.atleast_1d(np.asarray(thresholds, dtype=np.float64)), "thresholds", ndim=1)
        )
    points = []
    for t in grid.tolist():
        policy = CascadePolicy(CascadeConfig(chain=list(chain), thresholds=float(t)), scorer)
        r = run_offline(policy, matrix)
        scored = r["known"]
        k = int(scored.sum())
        calls = r["n_calls"][scored]
        rates = []
        for stage in range(len(chain) - 1):
            reached = int((calls > stage).sum())
            rates.append(float((calls > stage + 1).sum() / reached) if reached else None)
        points.append({
            "threshold": float(t),
            "cost": float(r["cost"][scored].mean()) if k else None,
            "quality": float(r["quality"][scored].mean()) if k else None,
            "n_scored": k,
            "n_unscored": int(scored.size - k),
            "calls_per_prompt": float(calls.mean()) if k else None,
            "deferral_rate": rates,
        })  # fmt: skip
    return points


def evaluate_sequential(points: Sequence[dict], matrix, chain: Sequence[str] | None = None) -> dict:
    """A report on a sequential policy's curve, in the shape of ``evaluate_predictions``'s.

    Conventions (compare ``docs/metrics.md``):

    - **Single models** are the chain's models (all of the table's when ``chain`` is None), each
      scored on the prompts where it has an outcome (``single_models[j]["n_prompts"]``);
      ``cost_range`` is [cheapest, most expensive] of their mean costs, and it is the range of every
      AIQ and of the cascade AUC.
    - **Router curve** (``curve``): the points with at least one scored prompt, as
      ``{"cost", "quality", "threshold"}``; ``aiq.router`` is the AIQ of their non-decreasing convex
      hull (mixing two thresholds at random reaches the chord), so
      ``aiq([p["cost"]...], [p["quality"]...], *cost_range)`` recomputes it.
    - **Zero router**: the hull of the single models (``aiq.zero_router``).
    - **Oracle**: on the prompts where *every* chain model has an outcome (``oracle.n_prompts``), the
      exact per-prompt oracle frontier (:func:`~routerzoo.evaluation.metrics.oracle_frontier`; the
      limit of a fine λ grid, so slightly above ``evaluate_predictions``'s grid oracle);
      ``oracle.quality``/``oracle.cost`` its best-quality point (each prompt's best model, the
      cheapest among equals). None when no prompt has every chain model.
    - ``gap_closed = (AIQ_router − AIQ_zero) / (AIQ_oracle − AIQ_zero)``; None when undefined.
    - ``cascade_auc``: cascade-routing's area under the *actual* cascade curve (raw points, no
      hull) over ``cost_range``, anchored at the cheapest single model's quality
      (:func:`~routerzoo.evaluation.metrics.cascade_auc`); ``cascade_max_diff`` likewise.
    - ``n_unscored``: the most prompts any point left unscored; ``max_quality``: the best point.

    On a partial table the router's points, the single models and the oracle average over different
    prompt sets; on a complete table they all use every prompt.

    Args:
        points: from :func:`cascade_curve` (any dicts with ``cost``, ``quality``, ``threshold`` and
            ``n_unscored``).
        matrix: the :class:`~routerzoo.data.matrix.OutcomeMatrix` the points were computed on.
        chain: the models the policy could call; default every model of the table.

    Returns:
        A JSON-able dict: ``kind``, ``models``, ``n_prompts``, ``n_unscored``, ``cost_range``,
        ``curve``, ``points`` (the input points), ``single_models``, ``best_single``, ``oracle``,
        ``aiq`` {router, zero_router, oracle}, ``gap_closed``, ``cascade_auc``,
        ``cascade_max_diff``, ``max_quality``. Undefined values are None.
    """
    names = list(matrix.models) if chain is None else _check_chain(chain, matrix)
    sub = matrix.select_models(names)
    tq, tc = sub.quality, sub.cost
    observed = ~np.isnan(tq)

    singles = []
    for j, nm in enumerate(names):
        k = int(observed[:, j].sum())
        if k:
            singles.append({"name": nm, "quality": float(tq[observed[:, j], j].mean()),
                            "cost": float(tc[observed[:, j], j].mean()), "n_prompts": k})  # fmt: skip
    if not singles:
        raise EvaluationInputError(f"no model of {names} has any outcome in the table")
    sq = np.array([s["quality"] for s in singles])
    sc = np.array([s["cost"] for s in singles])
    a, b = float(sc.min()), float(sc.max())
    best = int(np.lexsort((sc, -sq))[0])  # highest quality, then cheapest
    cheapest = int(np.lexsort((-sq, sc))[0])  # lowest cost, then best

    pts = [p for p in points if p.get("cost") is not None and p.get("quality") is not None]
    if not pts:
        raise EvaluationInputError("no point of the curve has a scored prompt; nothing to evaluate")
    c = M.as_finite([p["cost"] for p in pts], "curve costs", ndim=1, nonnegative=True)
    q = M.as_finite([p["quality"] for p in pts], "curve qualities", ndim=1)

    aiq_r = M.aiq(c, q, a, b)
    aiq_z = M.aiq(sc, sq, a, b)
    full = observed.all(axis=1)
    oracle = None
    aiq_o = float("nan")
    if full.any():
        oq, oc = tq[full], tc[full]
        fc, fq = M.oracle_frontier(oq, oc)
        aiq_o = M.aiq(fc, fq, a, b)
        d = argmax_decide(oq, oc, 0.0)
        rows = np.arange(oq.shape[0])
        oracle = {"quality": float(oq[rows, d].mean()), "cost": float(oc[rows, d].mean()),
                  "aiq": aiq_o, "n_prompts": int(full.sum())}  # fmt: skip
    den = aiq_o - aiq_z
    gap = (aiq_r - aiq_z) / den if math.isfinite(den) and abs(den) > 1e-12 * max(1.0, abs(aiq_o)) else None

    return {
        "kind": "sequential",
        "models": names,
        "n_prompts": len(matrix),
        "n_unscored": max(int(p.get("n_unscored", 0)) for p in points) if points else 0,
        "cost_range": [a, b],
        "curve": [
            {"cost": float(x), "quality": float(y), "threshold": _num(p.get("threshold"))}
            for x, y, p in zip(c, q, pts, strict=True)
        ],  # fmt: skip
        "points": [dict(p) for p in points],
        "single_models": singles,
        "best_single": {k: singles[best][k] for k in ("name", "quality", "cost")},
        "oracle": oracle,
        "aiq": {"router": aiq_r, "zero_router": aiq_z, "oracle": _num(aiq_o)},
        "gap_closed": _num(gap),
        "cascade_auc": M.cascade_auc(c, q, a, b, float(sq[cheapest])),
        "cascade_max_diff": M.cascade_max_diff(c, q, sc, sq),
        "max_quality": float(q.max()),
    }
