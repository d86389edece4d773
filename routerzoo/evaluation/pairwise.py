"""Evaluation on held-out preference pairs: does the router prefer the model people preferred?

For each comparison (prompt, model a, model b, winner) the router's predictions give
P(a preferred to b) (:meth:`routerzoo.routers.core.base.Router.win_probability`: Bradley-Terry on the
predicted qualities, exact for the Elo router). Reported:

* ``accuracy``: weighted share of decisive pairs (no tie) where the router's preferred model won;
* ``log_loss``: weighted binary cross-entropy with ties as 0.5 targets (ln 2 ≈ 0.693 is a coin);
* the same for the ``coin`` baseline (P = 0.5) for reference.
"""

from __future__ import annotations

import numpy as np

from routerzoo.data.matrix import PreferenceMatrix
from routerzoo.routers.kinds.elo import pair_metrics


def evaluate_pairs(router, pairs: PreferenceMatrix) -> dict:
    """Pairwise accuracy and log-loss of ``router`` on ``pairs`` (indices into ``router.models``)."""
    if list(pairs.models) != list(router.models):
        raise ValueError("pairs must index the router's candidate models")
    n = len(pairs)
    if n == 0:
        return {"n_pairs": 0, "accuracy": None, "log_loss": None}
    unique = sorted(set(pairs.prompts))
    row = {p: i for i, p in enumerate(unique)}
    pred = router.predict(unique)
    idx = np.array([row[p] for p in pairs.prompts])
    from routerzoo.routers.core.prediction import Prediction

    expanded = Prediction(pred.quality[idx], pred.cost[idx])
    p = router.win_probability(expanded, pairs.a, pairs.b)
    ours = pair_metrics(p, pairs.outcome, pairs.weight)
    coin = pair_metrics(np.full(n, 0.5), pairs.outcome, pairs.weight)
    ties = int((pairs.outcome == 0.5).sum())
    return {
        "n_pairs": n,
        "n_ties": ties,
        "accuracy": _num(ours["accuracy"]),
        "log_loss": _num(ours["log_loss"]),
        "coin_log_loss": _num(coin["log_loss"]),
    }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
