"""Similarity-weighted Elo router (RouteLLM's "SW ranking"), for N models.

For a new prompt x, every training comparison is weighted by how similar its prompt is to x, and
Bradley-Terry ratings are fitted to the weighted comparisons (:func:`routerzoo.routers.kinds.elo.fit_ratings`):

    w_i(x) = exp((sim(x, p_i) − max_i' sim(x, p_i')) / temperature)

(RouteLLM uses 10^(1 + sim / max sim), a nearly global weighting; the temperature here spans local
to global and is chosen on validation). Because comparisons of the same prompt share a weight, each
training prompt is summarised by its m × m win matrix C_i (C_i[a, b] = weighted wins of a over b,
ties half to each side); the query's weighted comparisons are then Σ_i w_i C_i, normalised, plus
``global_weight`` times the normalised global win matrix (a prior that keeps the local ratings near
the global ones where the neighbourhood says little). Predicted quality of model j is
sigmoid(r_j − mean r): P(beating an average model on this prompt).

Pairs come from the dataset's preference table, or are derived from benchmark outcomes when the
dataset has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router
from routerzoo.routers.kinds.elo import (
    RatingConfig,
    as_quality,
    fit_ratings,
    rating_pair_metrics,
    rating_pairs,
    train_rating_pairs,
)

if TYPE_CHECKING:
    from routerzoo.data.matrix import PreferenceMatrix
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class SWEloConfig(RatingConfig):
    """Similarity-weighted Bradley-Terry router (and the fields of :class:`RatingConfig`).

    Attributes:
        temperature: softmax temperature over cosine similarities (small: only the nearest training
            prompts count; large: the global ranking); None picks the best of
            ``temperature_candidates`` on the validation split (the artifact stores the one chosen).
        temperature_candidates: values tried when ``temperature`` is None.
        global_weight: weight of the global comparisons (normalised) added to the local ones
            (normalised): a prior towards the global ratings; 0 for purely local ratings.
        top_k: only the top_k most similar training prompts enter the local weights; None for all.
        max_iter: Newton iterations at most per prompt.
    """

    temperature: float | None = None
    temperature_candidates: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.2, 1.0])
    global_weight: float = 0.25
    top_k: int | None = None
    max_iter: int = 50
    tol: float = 1e-7

    def __post_init__(self):
        super().__post_init__()
        if self.temperature is not None and not self.temperature > 0:
            raise ConfigError(f"router.temperature must be > 0, got {self.temperature}")
        if not self.temperature_candidates or min(self.temperature_candidates) <= 0:
            raise ConfigError(f"router.temperature_candidates must be positive numbers, got {self.temperature_candidates}")
        if self.global_weight < 0:
            raise ConfigError(f"router.global_weight must be >= 0, got {self.global_weight}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"router.top_k must be >= 1, got {self.top_k}")


def win_matrices(pairs: PreferenceMatrix) -> tuple[list[str], np.ndarray]:
    """Per prompt of ``pairs``: its first text and its (m, m) weighted win matrix.

    Returns:
        (texts (P,), wins (P, m, m)) with wins[i, a, b] = Σ weight·outcome over prompt i's
        comparisons of a with b (and weight·(1 − outcome) to wins[i, b, a]).
    """
    m = len(pairs.models)
    index: dict[str, int] = {}
    texts: list[str] = []
    rows = np.empty(len(pairs), dtype=np.int64)
    for k, (pid, text) in enumerate(zip(pairs.prompt_ids, pairs.prompts, strict=True)):
        i = index.get(pid)
        if i is None:
            i = index[pid] = len(texts)
            texts.append(text)
        rows[k] = i
    wins = np.zeros((len(texts), m, m))
    np.add.at(wins, (rows, pairs.a, pairs.b), pairs.weight * pairs.outcome)
    np.add.at(wins, (rows, pairs.b, pairs.a), pairs.weight * (1.0 - pairs.outcome))
    return texts, wins


class PromptWinsRouter(Router):
    """A router that keeps its training prompts' embeddings (P, d) and win matrices (P, m, m) and
    rates models per prompt from the similar ones (SW-Elo, Eagle)."""

    uses_embeddings = True
    state_arrays = ("embeddings", "wins")
    _CHUNK = 1024

    def _set_arrays(self, embeddings: np.ndarray, wins: np.ndarray) -> None:
        self.embeddings_ = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.wins_ = np.ascontiguousarray(wins, dtype=np.float32)

    def fit_arrays(self, embeddings: np.ndarray, wins: np.ndarray):
        self._set_arrays(embeddings, wins)
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        emb = self._tensor(tensors, "embeddings", (None, None))
        if emb.shape[0] == 0:
            raise UserError("weights: tensor 'embeddings' holds no training prompts")
        m = len(self.models)
        self._set_arrays(emb, self._tensor(tensors, "wins", (emb.shape[0], m, m)))

    def _rate(self, wins: np.ndarray) -> np.ndarray:
        """Bradley-Terry ratings (m,) of one (m, m) matrix of weighted wins (the config's l2, max_iter, tol)."""
        m = len(self.models)
        a, b = np.nonzero(~np.eye(m, dtype=bool))
        c = self.config
        return fit_ratings(a, b, np.ones(len(a)), wins[a, b], m, c.l2, c.max_iter, c.tol)


class SWEloRouter(PromptWinsRouter):
    """Per-prompt Bradley-Terry ratings from similarity-weighted training comparisons.

    State: ``embeddings`` (P, d) of the training prompts with comparisons and their ``wins`` (P, m, m).
    """

    kind = "sw-elo"
    Config = SWEloConfig

    def ratings(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) Bradley-Terry ratings fitted for each prompt."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embeddings_.shape[1]:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {self.embeddings_.shape[1]})")
        c = self.config
        t = float(c.temperature if c.temperature is not None else 0.1)
        m = len(self.models)
        flat = self.wins_.reshape(len(self.wins_), m * m).astype(np.float64)
        glob = flat.sum(axis=0)
        glob = glob / max(glob.sum(), 1e-12)
        out = np.empty((len(embeddings), m))
        for start in range(0, len(embeddings), self._CHUNK):
            sims = embeddings[start:start + self._CHUNK].astype(np.float32) @ self.embeddings_.T
            sims = sims.astype(np.float64)
            if c.top_k is not None and c.top_k < sims.shape[1]:
                cut = np.partition(sims, -c.top_k, axis=1)[:, -c.top_k][:, None]
                sims = np.where(sims >= cut, sims, -np.inf)
            w = np.exp((sims - sims.max(axis=1, keepdims=True)) / t)
            local = w @ flat
            local /= np.maximum(local.sum(axis=1, keepdims=True), 1e-12)
            total = local + c.global_weight * glob
            for i, row in enumerate(total):
                out[start + i] = self._rate(row.reshape(m, m))
        return out

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, None]:
        return as_quality(self.ratings(embeddings)), None


def _embed_texts(ctx: FitContext, split: str, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, from the split's outcome embeddings where they are those prompts."""
    outcomes = ctx.train if split == "train" else ctx.val
    if outcomes is not None and len(outcomes):
        emb = ctx.train_embeddings if split == "train" else ctx.val_embeddings
        index = {p: i for i, p in enumerate(outcomes.prompts)}
        if all(t in index for t in texts):
            return emb[[index[t] for t in texts]]
    return ctx.embed(texts)


def first_texts(pairs: PreferenceMatrix) -> tuple[list[str], np.ndarray]:
    """Each prompt of ``pairs`` once (its first text, in order of appearance) and, per pair, the
    index of its prompt in that list (n,)."""
    first: dict[str, int] = {}
    texts: list[str] = []
    for pid, text in zip(pairs.prompt_ids, pairs.prompts, strict=True):
        if pid not in first:
            first[pid] = len(texts)
            texts.append(text)
    return texts, np.array([first[pid] for pid in pairs.prompt_ids])


def validation_target(ctx: FitContext, source: str) -> tuple[np.ndarray, PreferenceMatrix | None]:
    """What a rating router's candidates are scored on: the validation rows where every model has an
    outcome (mask (n_val,)), when there are two or more (AIQ); else the validation comparisons
    (pair log-loss), None or empty when there are none either."""
    val = ctx.val
    complete = val.observed.all(axis=1) if val is not None and len(val) else np.zeros(0, dtype=bool)
    return complete, None if complete.sum() >= 2 else rating_pairs(ctx, "val", source)


def _val_pair_score(router: SWEloRouter, pairs: PreferenceMatrix, ctx: FitContext) -> dict:
    """Pair log-loss and accuracy of the per-prompt ratings on (validation) pairs."""
    texts, rows = first_texts(pairs)
    return rating_pair_metrics(router.ratings(_embed_texts(ctx, "val", texts).astype(np.float32)), pairs, rows)


def fit_sw_elo(config: SWEloConfig, ctx: FitContext) -> tuple[SWEloRouter, dict]:
    """Summarise the training comparisons per prompt; pick the temperature on validation
    (AIQ where the validation split has outcomes, else pair log-loss)."""
    from routerzoo.routers.kinds.knn import validation_scores

    pairs = train_rating_pairs(ctx, "sw-elo", config.source)
    texts, wins = win_matrices(pairs)
    emb = _embed_texts(ctx, "train", texts)
    temps = [config.temperature] if config.temperature is not None else sorted(set(config.temperature_candidates))
    complete, val_pairs = validation_target(ctx, config.source)
    val_outcomes = complete.sum() >= 2
    metrics: dict = {"n_train_prompts": len(texts), "n_train_pairs": len(pairs)}
    best, best_key = None, float("inf")
    for t in temps:
        router = SWEloRouter(replace(config, temperature=float(t)), **ctx.router_kwargs(encoder=True)).fit_arrays(emb, wins)
        if len(temps) == 1 or (not val_outcomes and (val_pairs is None or len(val_pairs) == 0)):
            best = (t, router)
            break
        if val_outcomes:
            scores = validation_scores(router, ctx)
            key = -scores["aiq"] if "aiq" in scores else scores["mse"]
        else:
            scores = {f"pair_{k}": v for k, v in _val_pair_score(router, val_pairs, ctx).items()}
            key = scores["pair_log_loss"]
        metrics.update({f"val_{name}_t{t:g}": value for name, value in scores.items()})
        if key < best_key:
            best, best_key = (t, router), key
    t, router = best
    metrics["temperature"] = float(t)
    return router, metrics
