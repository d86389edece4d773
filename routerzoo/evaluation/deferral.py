"""How well a deferral scorer ranks answers: AUROC of correctness, and the deferral curve.

For a stage with answers of quality ``q_cur`` and a next model of quality ``q_next`` on the same
prompts, deferring the share r of prompts with the *lowest* scores gives mean quality
``mean(where(deferred, q_next, q_cur))``; the deferral curve is that quality for r from 0 to 1
and its AUC (trapezoids over r) summarises the scorer: a random scorer gets the straight line
between the two models, an oracle the best achievable bow (Jitkrittum et al. 2024; Gupta et al.
2024 call it the deferral curve).
"""

from __future__ import annotations

import numpy as np

from routerzoo.errors import UserError
from routerzoo.evaluation.metrics import EvaluationInputError


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties averaged); None if one class is absent.

    Args:
        scores: (n,) higher = more likely positive.
        labels: (n,) bools (or 0/1).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape or s.ndim != 1:
        raise EvaluationInputError(f"scores and labels must be (n,) each, got {s.shape} and {y.shape}")
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def deferral_curve(scores: np.ndarray, q_cur: np.ndarray, q_next: np.ndarray, n_points: int = 101) -> dict:
    """Quality when deferring the lowest-scored share r of prompts, r on a grid of ``n_points``.

    Args:
        scores: (n,) acceptance scores of the current answers (NaN = always deferred first).
        q_cur: (n,) quality of the current model's answers.
        q_next: (n,) quality of the next model's answers on the same prompts.

    Returns:
        ``{"share": (p,), "quality": (p,), "auc", "random_auc", "oracle_auc"}`` (lists / floats):
        ``random_auc`` deferring in random order (the chord), ``oracle_auc`` deferring exactly the
        prompts where the next model is better first.
    """
    s = np.asarray(scores, dtype=np.float64)
    a, b = np.asarray(q_cur, dtype=np.float64), np.asarray(q_next, dtype=np.float64)
    if not (s.shape == a.shape == b.shape) or s.ndim != 1 or s.size == 0:
        raise EvaluationInputError(f"scores, q_cur and q_next must be (n,) with n > 0, got {s.shape}, {a.shape}, {b.shape}")
    share = np.linspace(0.0, 1.0, n_points)

    def curve(order: np.ndarray) -> np.ndarray:
        gain = np.concatenate([[0.0], np.cumsum((b - a)[order])])  # gain after deferring the first k
        k = np.round(share * s.size).astype(int)
        return a.mean() + gain[k] / s.size

    q = curve(np.argsort(np.where(np.isnan(s), -np.inf, s), kind="mergesort"))
    oracle = curve(np.argsort(-(b - a), kind="mergesort"))
    trap = lambda y: float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(share)))  # noqa: E731
    return {"share": share.tolist(), "quality": q.tolist(), "auc": trap(q),
            "random_auc": float((a.mean() + b.mean()) / 2.0), "oracle_auc": trap(oracle)}


def evaluate_deferral(scorer, matrix, model: str = "", next_model: str = "") -> dict:
    """AUROC of correctness (quality >= 0.5) of ``model``'s answers (every model's if empty), and with
    ``next_model`` the deferral curve's AUC against the random and oracle orders."""
    from routerzoo.routers.deferral.token_quantile import answers_for_training

    rows, cols, prompts, responses, lps, q = answers_for_training(matrix, model)
    out: dict = {"n_answers": int(len(rows))}
    if not len(rows):
        return out
    scores = np.asarray(scorer.predict(prompts, responses, lps), dtype=np.float64)
    out["auroc"] = auroc(scores, q >= 0.5)
    if next_model:
        if next_model not in matrix.models:
            raise UserError(f"--next-model {next_model!r} is not in the dataset; its models: {list(matrix.models)}")
        k = matrix.models.index(next_model)
        qn = matrix.quality[rows, k]
        ok = ~np.isnan(qn)
        if ok.any():
            c = deferral_curve(scores[ok], q[ok], qn[ok])
            out.update({"deferral_auc": c["auc"], "random_auc": c["random_auc"], "oracle_auc": c["oracle_auc"]})
    return out
