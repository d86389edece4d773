"""Global Bradley-Terry (Elo) rating router, trained from preference pairs.

Each candidate gets one rating r_j, fitted by weighted maximum likelihood of

    P(a preferred to b) = sigmoid(r_a − r_b)

over the training pairs, ties counting as half a win for each side, with a small L2 penalty that
fixes the ratings' offset and keeps a model seen in few pairs near the average (Chatbot Arena fits
its leaderboard the same way). The router's predicted quality of model j is its probability of
beating an average model, sigmoid(r_j − mean(r)), the same for every prompt: a global ranking, the
preference-data counterpart of the best-single-model baseline and the reference for prompt-aware
preference routers (similarity-weighted Elo, matrix factorisation).

Pairs come from the dataset's preference table; a dataset with benchmark outcomes only yields pairs
derived from them (see :meth:`~routerzoo.data.matrix.PreferenceMatrix.from_outcomes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router

if TYPE_CHECKING:
    from routerzoo.data.matrix import PreferenceMatrix
    from routerzoo.routers.core.fit_context import FitContext

#: Elo points per unit of rating (the chess convention: 400 points = 10:1 odds)
ELO_SCALE = 400.0 / np.log(10.0)


@dataclass
class RatingConfig:
    """The Bradley-Terry fit fields every rating router (elo, sw-elo, eagle) shares; a kind's
    config subclasses it and re-declares a field to change its default.

    Attributes:
        l2: L2 penalty on the ratings, relative to the mean (weighted) pair log-likelihood.
        max_iter: Newton iterations at most per fit.
        tol: stop when the largest rating update is below this.
        source: "auto" (the preference table if the dataset has one, else pairs derived from
            outcomes), "preferences" or "outcomes".
    """

    l2: float = 1e-3
    max_iter: int = 100
    tol: float = 1e-9
    source: str = "auto"

    def __post_init__(self):
        if not self.l2 > 0:
            raise ConfigError(f"router.l2 must be > 0 (it makes the ratings identifiable), got {self.l2}")
        if self.max_iter < 1:
            raise ConfigError(f"router.max_iter must be >= 1, got {self.max_iter}")
        if self.source not in ("auto", "preferences", "outcomes"):
            raise ConfigError(f"router.source must be 'auto', 'preferences' or 'outcomes', got {self.source!r}")


@dataclass
class EloConfig(RatingConfig):
    """Bradley-Terry rating router: the fields of :class:`RatingConfig`."""


def fit_ratings(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, weight: np.ndarray, m: int,
                l2: float = 1e-3, max_iter: int = 100, tol: float = 1e-9) -> np.ndarray:
    """Bradley-Terry ratings by Newton's method (the problem is convex; m is small).

    Args:
        a, b: (n,) model indices of each comparison.
        outcome: (n,) 1 if a won, 0 if b won, 0.5 for a tie.
        weight: (n,) comparison weights.
        m: number of models.
        l2: penalty on ||r||² relative to the weighted mean log-likelihood.

    Returns:
        (m,) ratings (natural-log odds units), centred by the penalty.
    """
    r = np.zeros(m)
    total = float(weight.sum())
    if total <= 0:
        return r
    w = weight / total
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(r[a] - r[b])))
        resid = w * (p - outcome)
        grad = np.bincount(a, resid, m) - np.bincount(b, resid, m) + l2 * r
        h = w * p * (1 - p)
        hess = l2 * np.eye(m)
        np.add.at(hess, (a, a), h)
        np.add.at(hess, (b, b), h)
        np.add.at(hess, (a, b), -h)
        np.add.at(hess, (b, a), -h)
        step = np.linalg.solve(hess, grad)
        r -= step
        if np.abs(step).max() < tol:
            break
    return r


def as_quality(ratings: np.ndarray) -> np.ndarray:
    """(n, m) P(beating an average model) from Bradley-Terry ratings (n, m): sigmoid of the centred ratings."""
    return 1.0 / (1.0 + np.exp(-(ratings - ratings.mean(axis=1, keepdims=True))))


def pair_metrics(p: np.ndarray, outcome: np.ndarray, weight: np.ndarray) -> dict:
    """Weighted log-loss (ties as 0.5 targets) and accuracy over decisive pairs."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    ll = -(outcome * np.log(p) + (1 - outcome) * np.log1p(-p))
    decisive = outcome != 0.5
    acc = float(np.average((p[decisive] > 0.5) == (outcome[decisive] == 1.0), weights=weight[decisive])) if decisive.any() else float("nan")
    return {"log_loss": float(np.average(ll, weights=weight)), "accuracy": acc}


class EloRouter(Router):
    """Ratings from preference pairs; quality = P(beats an average model)."""

    kind = "elo"
    Config = EloConfig
    state_arrays = ("ratings",)

    def fit_pairs(self, pairs: PreferenceMatrix) -> EloRouter:
        """Fit the ratings from pairs whose indices refer to ``self.models``."""
        if list(pairs.models) != self.models:
            raise ValueError("pairs index a different model list")
        c = self.config
        self.ratings_ = fit_ratings(pairs.a, pairs.b, pairs.outcome, pairs.weight, len(self.models), c.l2, c.max_iter, c.tol)
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.ratings_ = np.asarray(self._tensor(tensors, "ratings", (len(self.models),)), dtype=np.float64)

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, None]:
        q = as_quality(self.ratings_[None, :])
        return np.broadcast_to(q, (len(prompts), len(self.models))).copy(), None

    def elo(self) -> dict[str, float]:
        """Ratings on the familiar Elo scale (mean 1000)."""
        centred = self.ratings_ - self.ratings_.mean()
        return {m: float(1000.0 + ELO_SCALE * r) for m, r in zip(self.models, centred, strict=True)}


def train_rating_pairs(ctx: FitContext, kind: str, source: str) -> PreferenceMatrix:
    """The training split's comparisons (:func:`rating_pairs`), or a UserError naming what ``kind`` needs."""
    pairs = rating_pairs(ctx, "train", source)
    if pairs is None or len(pairs) == 0:
        what = "preference pairs" if source == "preferences" else "preference pairs or benchmark outcomes"
        raise UserError(f"router {kind!r} needs {what} in the train split; this dataset has none")
    return pairs


def rating_pair_metrics(ratings: np.ndarray, pairs: PreferenceMatrix, rows: np.ndarray | None = None) -> dict:
    """:func:`pair_metrics` of Bradley-Terry ratings on ``pairs``: global ratings (m,), or per-prompt
    ratings (P, m) with ``rows`` (n,) giving each pair's prompt."""
    r = ratings
    diff = r[pairs.a] - r[pairs.b] if rows is None else r[rows, pairs.a] - r[rows, pairs.b]
    return pair_metrics(1.0 / (1.0 + np.exp(-diff)), pairs.outcome, pairs.weight)


def rating_pairs(ctx: FitContext, split: str, source: str) -> PreferenceMatrix | None:
    """A split's comparisons: the dataset's own preference pairs, or pairs derived from its outcomes."""
    from routerzoo.data.matrix import PreferenceMatrix

    own = ctx.train_prefs if split == "train" else ctx.val_prefs
    outcomes = ctx.train if split == "train" else ctx.val
    if source == "preferences" or (source == "auto" and own is not None and len(own)):
        return own
    if outcomes is not None and len(outcomes):
        return PreferenceMatrix.from_outcomes(outcomes)
    return None


def fit_elo(config: EloConfig, ctx: FitContext) -> tuple[EloRouter, dict]:
    """Fit on the training pairs; report validation log-loss and accuracy when there are validation pairs."""
    pairs = train_rating_pairs(ctx, "elo", config.source)
    router = EloRouter(config, **ctx.router_kwargs(encoder=False)).fit_pairs(pairs)
    metrics: dict = {f"elo.{m}": v for m, v in router.elo().items()}
    metrics.update({f"train_pair_{k}": v for k, v in rating_pair_metrics(router.ratings_, pairs).items()})
    val = rating_pairs(ctx, "val", config.source)
    if val is not None and len(val):
        metrics.update({f"val_pair_{k}": v for k, v in rating_pair_metrics(router.ratings_, val).items()})
    return router, metrics
