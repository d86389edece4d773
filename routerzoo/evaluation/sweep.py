"""Turn per-prompt predictions into routing decisions, and sweep the cost weight.

A router predicts, for every prompt and model, a quality and a cost. For a cost weight lambda
(quality per USD: how much quality one dollar is worth) it sends each prompt to
``argmax_j pred_quality[i, j] - lambda * pred_cost[i, j]``. Sweeping lambda from 0 (always the best
predicted quality) to very large (always the cheapest) traces the router's (cost, quality) curve.
"""

from __future__ import annotations

import numpy as np

from routerzoo.evaluation.metrics import EvaluationInputError, as_finite
from routerzoo.routers.policies.argmax import decide as _decide  # the one decision rule, shared with serving

__all__ = ["decide", "cost_weight_grid", "sweep", "oracle_points"]


def _matrix(x, name: str, *, nonnegative: bool = False) -> np.ndarray:
    a = as_finite(x, name, nonnegative=nonnegative)
    if a.ndim != 2:
        raise EvaluationInputError(f"{name}: expected shape (n_prompts, n_models), got {a.shape}")
    return a


def _pred_cost(pred_cost, shape: tuple[int, int]) -> np.ndarray:
    """``pred_cost`` of shape (n, m), or (m,) for one price per model, broadcast to (n, m)."""
    pc = as_finite(pred_cost, "pred_cost")
    if pc.ndim == 1 and pc.shape[0] == shape[1]:
        return np.broadcast_to(pc, shape)
    if pc.shape != shape:
        raise EvaluationInputError(f"pred_cost: expected shape {shape} or ({shape[1]},), got {pc.shape}")
    return pc


def _weights(cost_weights) -> np.ndarray:
    w = as_finite(np.atleast_1d(np.asarray(cost_weights, dtype=np.float64)), "cost_weights", ndim=1)
    if (w < 0).any():
        raise EvaluationInputError(f"cost_weights must be >= 0, got {w[w < 0][0]}")
    return w


def decide(pred_quality, pred_cost, cost_weight: float) -> np.ndarray:
    """Route each prompt to ``argmax_j pred_quality[i, j] - cost_weight * pred_cost[i, j]``.

    Exact ties in that objective go to the model with the lower predicted cost, then to the lower
    model index; so with ``cost_weight=0`` and equal predicted qualities (e.g. binary labels) the
    cheapest of the equally good models is chosen.

    Args:
        pred_quality: of shape (n, m), predicted quality of each model on each prompt.
        pred_cost: of shape (n, m), or (m,) for a fixed price per model, in USD.
        cost_weight: lambda >= 0, in quality per USD.

    Returns:
        Model indices, of shape (n,), dtype int.
    """
    pq = _matrix(pred_quality, "pred_quality")
    pc = _pred_cost(pred_cost, pq.shape)
    lam = float(_weights(cost_weight)[0])
    return _decide(pq, pc, lam)


def decisions(pred_quality: np.ndarray, pred_cost: np.ndarray, cost_weights: np.ndarray) -> np.ndarray:
    """:func:`decide` for every cost weight; validated arrays in, shape (k, n) out."""
    return np.stack([_decide(pred_quality, pred_cost, float(lam)) for lam in cost_weights])


def cost_weight_grid(cost, n_points: int = 64, *, quality_range: float = 1.0) -> np.ndarray:
    """Cost weights (quality per USD) spanning "always best quality" to "always cheapest".

    The grid is ``[0, geomspace(lo, top, n_points - 2), final]`` with, over prompts i and models j:

    - ``lo = 1e-3 * quality_range / max_i(max_j cost - min_j cost)``: paying for the most expensive
      model instead of the cheapest costs at most 0.1% of the quality range;
    - ``gap_i`` = on prompt i, the cost of the next-cheapest model minus the cheapest (positive gaps
      only); ``top = quality_range / quantile(gap, 0.01)``: on 99% of prompts no quality difference
      within the range buys the next model up;
    - ``final = 10 * quality_range / min(gap)``: no predicted quality difference within
      ``quality_range`` can beat the cost term, so every prompt goes to its cheapest model.

    Costs are often 1e-5..1e-2 USD per prompt, so the weights are large (1e2..1e7); being derived
    from the data, the grid needs no tuning. If no prompt has two models of different cost, cost
    cannot change a decision and the grid is ``[0.0]``.

    Args:
        cost: of shape (n, m) (or (m,)), the costs the decisions will use (predicted costs for a
            router, true costs for the oracle), USD.
        n_points: length of the grid, >= 3.
        quality_range: spread of the quality scores the decisions will use (e.g. max - min of the
            predicted quality; 1 for qualities in [0, 1]).

    Returns:
        Increasing cost weights, of shape (n_points,) (or (1,), see above).
    """
    C = as_finite(cost, "cost")
    C = C.reshape(1, -1) if C.ndim == 1 else C
    if C.ndim != 2:
        raise EvaluationInputError(f"cost: expected shape (n_prompts, n_models), got {C.shape}")
    if int(n_points) < 3:
        raise EvaluationInputError(f"n_points must be >= 3, got {n_points}")
    qr = float(quality_range)
    if not np.isfinite(qr) or qr <= 0:
        raise EvaluationInputError(f"quality_range must be a positive number, got {quality_range}")
    s = np.sort(C, axis=1)
    span = s[:, -1] - s[:, 0]
    gap_to_cheapest = s[:, 1:] - s[:, :1]
    gap = (
        np.where(gap_to_cheapest > 0, gap_to_cheapest, np.inf).min(axis=1)
        if C.shape[1] > 1
        else np.array([np.inf])
    )
    gap = gap[np.isfinite(gap)]
    if gap.size == 0:
        return np.array([0.0])
    lo = 1e-3 * qr / float(span.max())
    top = qr / float(np.quantile(gap, 0.01))
    final = 10.0 * qr / float(gap.min())
    return np.concatenate(([0.0], np.geomspace(lo, top, int(n_points) - 2), [final]))


def realised(D: np.ndarray, true_quality: np.ndarray, true_cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt realised (cost, quality) of decisions ``D`` of shape (k, n); each out (k, n)."""
    rows = np.arange(D.shape[1])[None, :]
    return true_cost[rows, D], true_quality[rows, D]


def _check_truth(true_quality, true_cost):
    tq = _matrix(true_quality, "true_quality")
    tc = _matrix(true_cost, "true_cost", nonnegative=True)
    if tq.shape != tc.shape:
        raise EvaluationInputError(f"true_quality {tq.shape} and true_cost {tc.shape} differ in shape")
    return tq, tc


def _points(D: np.ndarray, tq: np.ndarray, tc: np.ndarray, w: np.ndarray) -> list[dict]:
    rc, rq = realised(D, tq, tc)
    m = tq.shape[1]
    out = []
    for lam, d, c, q in zip(w.tolist(), D, rc.mean(axis=1).tolist(), rq.mean(axis=1).tolist(), strict=True):
        share = np.bincount(d, minlength=m) / d.shape[0]
        out.append({"cost_weight": lam, "cost": c, "quality": q, "model_share": share.tolist()})
    return out


def sweep(pred_quality, pred_cost, true_quality, true_cost, cost_weights) -> list[dict]:
    """The router's realised (cost, quality) point at every cost weight.

    Args:
        pred_quality: of shape (n, m), predicted quality.
        pred_cost: of shape (n, m) or (m,), predicted cost in USD.
        true_quality: of shape (n, m), realised quality of every model on every prompt.
        true_cost: of shape (n, m), realised cost in USD.
        cost_weights: of shape (k,), lambdas >= 0 (see :func:`cost_weight_grid`).

    Returns:
        k dicts ``{"cost_weight", "cost", "quality", "model_share"}``: mean true cost and quality of
        the chosen models, and the share of prompts sent to each model (a list of m floats).
    """
    tq, tc = _check_truth(true_quality, true_cost)
    pq = _matrix(pred_quality, "pred_quality")
    if pq.shape != tq.shape:
        raise EvaluationInputError(f"pred_quality {pq.shape} and true_quality {tq.shape} differ in shape")
    pc = _pred_cost(pred_cost, pq.shape)
    w = _weights(cost_weights)
    return _points(decisions(pq, pc, w), tq, tc, w)


def oracle_points(true_quality, true_cost, cost_weights) -> list[dict]:
    """:func:`sweep` with the truth as the prediction: the oracle router's points.

    At weight 0 the oracle picks each prompt's best model (the cheapest among equals), the
    highest quality any router can reach at the lowest cost that reaches it.
    """
    tq, tc = _check_truth(true_quality, true_cost)
    w = _weights(cost_weights)
    return _points(decisions(tq, tc, w), tq, tc, w)
