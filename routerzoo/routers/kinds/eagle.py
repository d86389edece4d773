"""Eagle router: global Elo plus local Elo over the nearest training prompts (Zhao et al., 2024).

Two Bradley-Terry rating vectors per prompt x (:func:`routerzoo.routers.kinds.elo.fit_ratings`):

* global ratings r_G, fitted once to every training comparison (the ``elo`` router's ratings);
* local ratings r_L(x), fitted to the comparisons of the N training prompts most similar to x
  (cosine similarity of prompt embeddings), each neighbour's comparisons counted once.

The router's ratings are the mix r(x) = P·r_G + (1 − P)·r_L(x), and the predicted quality of model j
is sigmoid(r_j(x) − mean r(x)): P(beating an average model on this prompt). P and N are chosen on
the validation split (AIQ where it has outcomes, else pair log-loss) unless set. Where
similarity-weighted Elo (``sw-elo``) weights every training prompt softly, Eagle keeps a hard
neighbourhood and a global anchor, which is what lets it stay useful with few comparisons per prompt.

Pairs come from the dataset's preference table, or are derived from benchmark outcomes when the
dataset has none (the ``sw-elo`` helpers: one win matrix per training prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.kinds.elo import RatingConfig, as_quality, rating_pair_metrics, train_rating_pairs
from routerzoo.routers.kinds.sw_elo import (
    PromptWinsRouter,
    _embed_texts,
    first_texts,
    validation_target,
    win_matrices,
)

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class EagleConfig(RatingConfig):
    """Eagle (global + local Elo) router (and the fields of :class:`RatingConfig`; ``l2`` applies
    to the global and the local fits).

    Attributes:
        p: weight of the global ratings in the mix (1 = the global ranking, 0 = purely local);
            None picks the best of ``p_candidates`` on the validation split (the artifact stores it).
        p_candidates: values of ``p`` tried when it is None.
        neighbours: training prompts in the local neighbourhood; None picks the best of
            ``neighbours_candidates`` on validation.
        neighbours_candidates: values of ``neighbours`` tried when it is None.
    """

    p: float | None = None
    p_candidates: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9])
    neighbours: int | None = None
    neighbours_candidates: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    l2: float = 1e-2
    max_iter: int = 50
    tol: float = 1e-7

    def __post_init__(self):
        super().__post_init__()
        if self.p is not None and not 0 <= self.p <= 1:
            raise ConfigError(f"router.p must be in [0, 1], got {self.p}")
        if not self.p_candidates or any(not 0 <= p <= 1 for p in self.p_candidates):
            raise ConfigError(f"router.p_candidates must be numbers in [0, 1], got {self.p_candidates}")
        if self.neighbours is not None and self.neighbours < 1:
            raise ConfigError(f"router.neighbours must be >= 1, got {self.neighbours}")
        if not self.neighbours_candidates or min(self.neighbours_candidates) < 1:
            raise ConfigError(f"router.neighbours_candidates must be positive integers, got {self.neighbours_candidates}")


class EagleRouter(PromptWinsRouter):
    """Global ratings mixed with per-prompt local ratings of the nearest training prompts.

    State: ``embeddings`` (P, d) of the training prompts with comparisons, their ``wins``
    (P, m, m) and the ``global_ratings`` (m,).
    """

    kind = "eagle"
    Config = EagleConfig
    state_arrays = (*PromptWinsRouter.state_arrays, "global_ratings")

    def fit_arrays(self, embeddings: np.ndarray, wins: np.ndarray) -> EagleRouter:
        """Store the training prompts' embeddings (P, d) and win matrices (P, m, m); fit the global ratings."""
        self._set_arrays(embeddings, wins)
        self.global_ratings_ = self._fit(self.wins_.sum(axis=0, dtype=np.float64))
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        super().load_state(tensors)  # the stored global ratings are read, not refitted
        self.global_ratings_ = np.asarray(self._tensor(tensors, "global_ratings", (len(self.models),)), dtype=np.float64)

    def _fit(self, wins: np.ndarray) -> np.ndarray:
        """Bradley-Terry ratings (m,) of one (m, m) win matrix (normalised: the l2 prior is relative)."""
        return self._rate(wins / max(float(wins.sum()), 1e-12))

    def local_ratings(self, embeddings: np.ndarray, neighbours: int) -> np.ndarray:
        """(n, m) ratings fitted to the comparisons of each prompt's ``neighbours`` nearest training prompts."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embeddings_.shape[1]:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {self.embeddings_.shape[1]})")
        k = min(neighbours, len(self.embeddings_))
        out = np.empty((len(embeddings), len(self.models)))
        for start in range(0, len(embeddings), self._CHUNK):
            sims = embeddings[start:start + self._CHUNK].astype(np.float32) @ self.embeddings_.T
            # the k most similar, ties broken by training order so a batch and one prompt agree
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            for i, rows in enumerate(top):
                out[start + i] = self._fit(self.wins_[rows].sum(axis=0, dtype=np.float64))
        return out

    def ratings(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) mixed ratings P·global + (1 − P)·local for each prompt."""
        c = self.config
        p = 0.5 if c.p is None else float(c.p)
        n = 20 if c.neighbours is None else int(c.neighbours)
        return mix(self.global_ratings_, self.local_ratings(embeddings, n), p)

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, None]:
        return as_quality(self.ratings(embeddings)), None


def mix(global_ratings: np.ndarray, local: np.ndarray, p: float) -> np.ndarray:
    """P·global (m,) + (1 − P)·local (n, m) → (n, m)."""
    return p * global_ratings[None, :] + (1.0 - p) * local


def fit_eagle(config: EagleConfig, ctx: FitContext) -> tuple[EagleRouter, dict]:
    """Summarise the training comparisons per prompt, fit the global ratings, and pick P and N on
    validation (AIQ where the validation split has outcomes, else pair log-loss)."""
    from routerzoo.evaluation.report import evaluate_predictions

    pairs = train_rating_pairs(ctx, "eagle", config.source)
    texts, wins = win_matrices(pairs)
    router = EagleRouter(config, **ctx.router_kwargs(encoder=True)).fit_arrays(_embed_texts(ctx, "train", texts), wins)
    ps = [config.p] if config.p is not None else sorted(set(config.p_candidates))
    ns = [config.neighbours] if config.neighbours is not None else sorted(set(config.neighbours_candidates))
    metrics: dict = {"n_train_prompts": len(texts), "n_train_pairs": len(pairs)}

    val = ctx.val
    complete, val_pairs = validation_target(ctx, config.source)
    if len(ps) * len(ns) > 1 and complete.sum() >= 2:
        emb = ctx.val_embeddings[complete]
        cost = router.cost_model.predict(None, len(emb))

        def score(q: np.ndarray) -> tuple[float, dict]:
            report = evaluate_predictions(q, cost, val.quality[complete], val.cost[complete], val.models)
            return -report["aiq"]["router"], {"aiq": report["aiq"]["router"]}
    elif len(ps) * len(ns) > 1 and val_pairs is not None and len(val_pairs):
        texts_v, rows = first_texts(val_pairs)
        emb = _embed_texts(ctx, "val", texts_v).astype(np.float32)

        def score(q: np.ndarray) -> tuple[float, dict]:
            # logits of q differ from the ratings by a per-prompt constant, which pairs do not see
            s = rating_pair_metrics(np.log(q) - np.log1p(-q), val_pairs, rows)
            return s["log_loss"], {f"pair_{k}": v for k, v in s.items()}
    else:
        best_p, best_n = (ps[0] if config.p is not None else 0.5), (ns[0] if config.neighbours is not None else 20)
        emb = None
    if emb is not None:
        best, best_key = None, float("inf")
        for n in ns:
            local = router.local_ratings(emb, n)  # the expensive part, shared by every P
            for p in ps:
                key, scores = score(as_quality(mix(router.global_ratings_, local, p)))
                metrics.update({f"val_{name}_p{p:g}_n{n}": value for name, value in scores.items()})
                if key < best_key - 1e-12:
                    best, best_key = (p, n), key
        best_p, best_n = best
    router.config = replace(config, p=float(best_p), neighbours=int(best_n))
    metrics.update({"p": float(best_p), "neighbours": int(best_n)})
    return router, metrics
