"""k-nearest-neighbour router on prompt embeddings.

A prompt's predicted quality (and cost) for each model is the similarity-weighted mean over its k
most similar training prompts. "Rethinking predictive modelling for LLM routing" (2025) finds a
well-tuned kNN often matches complex learned routers, so it is the bar every router must clear.

Per-prompt outcomes are noisy (whether one model gets one question right is largely idiosyncratic),
so routing often prefers a larger k than the one minimising prediction error: on MMLU-Pro,
validation MSE is lowest at k = 80 while validation AIQ keeps rising to k = 320. k is therefore
selected by the routing objective itself (validation AIQ) unless ``select_by="mse"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class KNNConfig:
    """kNN router hyper-parameters.

    Attributes:
        k: neighbours; None picks the best of ``k_candidates`` on the validation split (the
            artifact stores the k chosen).
        k_candidates: values tried when ``k`` is None (those above half the training set are dropped).
        select_by: "aiq" (validation AIQ of the cost-quality curve) or "mse" (validation mean
            squared error of predicted quality).
        temperature: softmax temperature over cosine similarities; 0 weighs neighbours equally.
    """

    k: int | None = None
    k_candidates: list[int] = field(default_factory=lambda: [10, 20, 40, 80, 160, 320])
    select_by: str = "aiq"
    temperature: float = 0.0

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise ConfigError(f"router.k must be >= 1, got {self.k}")
        if not self.k_candidates or min(self.k_candidates) < 1:
            raise ConfigError(f"router.k_candidates must be positive integers, got {self.k_candidates}")
        if self.select_by not in ("aiq", "mse"):
            raise ConfigError(f"router.select_by must be 'aiq' or 'mse', got {self.select_by!r}")
        if self.temperature < 0:
            raise ConfigError(f"router.temperature must be >= 0, got {self.temperature}")


def knn_average(
    sims: np.ndarray, values: np.ndarray, observed: np.ndarray, k: int, temperature: float, fallback: np.ndarray
) -> np.ndarray:
    """Similarity-weighted mean of neighbour values.

    Args:
        sims: (n, N) similarities of n queries to N reference prompts.
        values: (N, m) reference values (anything where ``observed`` is False is ignored).
        observed: (N, m) bool mask of known values.
        k: neighbours per query.
        temperature: softmax temperature over similarities; 0 means uniform weights.
        fallback: (m,) value for a model none of the neighbours observed.

    Returns:
        (n, m) averages.
    """
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (n, k)
    top_sims = np.take_along_axis(sims, top, axis=1)
    if temperature > 0:
        w = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / temperature)
    else:
        w = np.ones_like(top_sims)
    obs = observed[top]  # (n, k, m)
    vals = np.where(obs, values[top], 0.0)
    wsum = (w[:, :, None] * obs).sum(axis=1)
    avg = (w[:, :, None] * vals).sum(axis=1) / np.maximum(wsum, 1e-12)
    return np.where(wsum > 0, avg, fallback[None, :])


class TableRouter(Router):
    """A router that predicts from a table of reference rows: their keys in embedding space (N, d)
    and each row's quality and cost (N, m), NaN where unobserved (knn: the training prompts;
    cluster: the k-means centroids). ``key_name`` names the keys' tensor, ``rows_are`` says what a
    row is (for the error on an empty table).
    """

    key_name: ClassVar[str]
    rows_are: ClassVar[str]
    uses_embeddings = True

    def set_tables(self, keys: np.ndarray, quality: np.ndarray, cost: np.ndarray):
        """Store the table: keys (N, d); quality, cost (N, m) with NaN for missing."""
        setattr(self, f"{self.key_name}_", np.ascontiguousarray(keys, dtype=np.float32))
        self.quality_ = np.ascontiguousarray(quality, dtype=np.float32)
        self.cost_ = np.ascontiguousarray(cost, dtype=np.float32)
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        keys = self._tensor(tensors, self.key_name, (None, None))
        n, m = keys.shape[0], len(self.models)
        if n == 0:
            raise UserError(f"weights: tensor {self.key_name!r} holds no {self.rows_are}")
        self.set_tables(keys, self._tensor(tensors, "quality", (n, m)), self._tensor(tensors, "cost", (n, m)))


class KNNRouter(TableRouter):
    """kNN over L2-normalised embeddings (cosine similarity).

    State: reference embeddings (N, d), their quality and cost (N, m) with NaN where unobserved.
    """

    kind = "knn"
    Config = KNNConfig
    key_name, rows_are = "embeddings", "reference prompts"
    state_arrays = ("embeddings", "quality", "cost")
    _CHUNK = 2048  # queries per similarity block: bounds memory at CHUNK × N floats

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embeddings_.shape[1]:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {self.embeddings_.shape[1]})")
        k = int(self.config.k if self.config.k is not None else 20)
        temperature = float(self.config.temperature)
        q_obs = ~np.isnan(self.quality_)
        c_obs = ~np.isnan(self.cost_)
        q_fallback = np.nanmean(self.quality_, axis=0)
        c_fallback = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        qs, cs = [], []
        for start in range(0, len(embeddings), self._CHUNK):
            sims = embeddings[start:start + self._CHUNK] @ self.embeddings_.T
            qs.append(knn_average(sims, self.quality_, q_obs, k, temperature, q_fallback))
            cs.append(knn_average(sims, self.cost_, c_obs, k, temperature, c_fallback))
        m = len(self.models)
        quality = np.concatenate(qs) if qs else np.zeros((0, m))
        cost = np.concatenate(cs) if cs else np.zeros((0, m))
        return quality.astype(np.float64), cost.astype(np.float64)


def validation_scores(router: KNNRouter, ctx: FitContext) -> dict:
    """Validation MSE of predicted quality (observed outcomes) and AIQ (prompts with every outcome)."""
    pred = router.predict_embeddings(ctx.val_embeddings)
    observed = ~np.isnan(ctx.val.quality)
    out = {"mse": float(np.mean((pred.quality[observed] - ctx.val.quality[observed]) ** 2))}
    complete = observed.all(axis=1)
    if complete.sum() >= 2:
        from routerzoo.evaluation.report import evaluate_predictions

        report = evaluate_predictions(pred.quality[complete], pred.cost[complete], ctx.val.quality[complete],
                                      ctx.val.cost[complete], ctx.val.models)
        out["aiq"] = report["aiq"]["router"]
    return out


def fit_best_k(config, ctx: FitContext, kind: str, min_per_k: int, build) -> tuple[Router, dict]:
    """The choice of k that the neighbourhood routers (knn, cluster) share.

    The candidates are ``config.k`` if set (at most the training prompts), else the
    ``config.k_candidates`` leaving at least ``min_per_k`` training prompts per k (the smallest
    candidate when none does). ``build(k, train) -> (k_used, router)`` fits one; the one with the best
    validation score is kept (AIQ with ``config.select_by == "aiq"`` where computable, else MSE).

    Returns:
        the router and metrics to log: validation scores per candidate k and the k used.
    """
    train = ctx.require_outcomes(kind)
    n = len(train)
    if config.k is not None:
        ks = [min(config.k, n)]
    else:
        ks = sorted({k for k in config.k_candidates if k <= max(1, n // min_per_k)} or {min(config.k_candidates + [n])})
    has_val = ctx.val is not None and len(ctx.val) > 0
    metrics: dict = {}
    best, best_key = None, float("inf")
    for k in ks:
        k_used, router = build(k, train)
        if not has_val or len(ks) == 1:
            best = (k_used, router)
            break
        scores = validation_scores(router, ctx)
        metrics.update({f"val_{name}_k{k}": value for name, value in scores.items()})
        # higher AIQ is better, lower MSE is better; fall back to MSE when AIQ is not computable
        key = -scores["aiq"] if config.select_by == "aiq" and "aiq" in scores else scores["mse"]
        if key < best_key:
            best, best_key = (k_used, router), key
    k, router = best
    metrics["k"] = k
    return router, metrics


def fit_knn(config: KNNConfig, ctx: FitContext) -> tuple[KNNRouter, dict]:
    """Returns the router (with the chosen k in its config) and metrics to log (validation scores per k)."""

    def build(k: int, train):
        router = KNNRouter(replace(config, k=k), **ctx.router_kwargs(encoder=True))
        return k, router.set_tables(ctx.train_embeddings, train.quality, train.cost)

    return fit_best_k(config, ctx, "knn", 2, build)
