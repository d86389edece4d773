"""Clustering router: k-means on prompt embeddings, each cluster's mean quality and cost per model.

Prompts are grouped by spherical k-means (cosine similarity on L2-normalised embeddings, k-means++
seeding, the best of ``n_init`` restarts, all under the fit's seed). Each cluster stores every
model's mean quality and mean cost over its training prompts, shrunk towards the model's global mean
by ``prior`` pseudo-prompts so that a small cluster does not route on noise. A new prompt gets the
table of its nearest centroid (or, with ``temperature`` > 0, a softmax-weighted mix of all
clusters). k is chosen by validation AIQ, the routing objective, like kNN's k.

Compared with kNN it stores k centroids instead of every training prompt (a smaller artifact and a
faster lookup) and averages over whole regions of the embedding space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.kinds.knn import TableRouter, fit_best_k

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class ClusterConfig:
    """Clustering router hyper-parameters.

    Attributes:
        k: number of clusters; None picks the best of ``k_candidates`` on the validation split (the
            artifact stores the k chosen).
        k_candidates: values tried when ``k`` is None (those above a tenth of the training set are dropped).
        prior: pseudo-prompts at the model's global mean added to every cluster (shrinkage; 0: none).
        temperature: softmax temperature over centroid similarities; 0 assigns each prompt to its
            nearest cluster only.
        n_init: k-means restarts (the lowest within-cluster dissimilarity is kept).
        max_iter: k-means iterations per restart at most.
        select_by: "aiq" (validation AIQ) or "mse" (validation mean squared error of quality).
    """

    k: int | None = None
    k_candidates: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64, 128])
    prior: float = 5.0
    temperature: float = 0.0
    n_init: int = 3
    max_iter: int = 50
    select_by: str = "aiq"

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise ConfigError(f"router.k must be >= 1, got {self.k}")
        if not self.k_candidates or min(self.k_candidates) < 1:
            raise ConfigError(f"router.k_candidates must be positive integers, got {self.k_candidates}")
        if self.prior < 0:
            raise ConfigError(f"router.prior must be >= 0, got {self.prior}")
        if self.temperature < 0:
            raise ConfigError(f"router.temperature must be >= 0, got {self.temperature}")
        if self.n_init < 1:
            raise ConfigError(f"router.n_init must be >= 1, got {self.n_init}")
        if self.max_iter < 1:
            raise ConfigError(f"router.max_iter must be >= 1, got {self.max_iter}")
        if self.select_by not in ("aiq", "mse"):
            raise ConfigError(f"router.select_by must be 'aiq' or 'mse', got {self.select_by!r}")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 3,
                     max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the unit sphere (cosine similarity), k-means++ seeding.

    Args:
        x: (n, d) points (normalised here).
        k: clusters (at most n).
        rng: the random generator (seeding and restarts).

    Returns:
        centroids (k, d) of unit norm and labels (n,).
    """
    x = _normalise(x)
    n = x.shape[0]
    k = max(1, min(k, n))
    best = (np.inf, None, None)
    for _ in range(n_init):
        # k-means++ on the cosine distance 1 - sim
        centres = [int(rng.integers(n))]
        dist = 1.0 - x @ x[centres[0]]
        for _ in range(1, k):
            p = np.maximum(dist, 0.0) ** 2
            total = p.sum()
            nxt = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
            centres.append(nxt)
            dist = np.minimum(dist, 1.0 - x @ x[nxt])
        c = x[centres].copy()
        labels = np.full(n, -1)
        for _ in range(max_iter):
            sims = x @ c.T
            new = sims.argmax(axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
            sums = np.zeros_like(c)
            np.add.at(sums, labels, x)
            empty = np.bincount(labels, minlength=k) == 0
            if empty.any():  # re-seed an empty cluster at the worst-served point
                worst = np.argsort(sims[np.arange(n), labels])[: int(empty.sum())]
                sums[empty] = x[worst]
            c = _normalise(sums)
        inertia = float(np.sum(1.0 - (x * c[labels]).sum(axis=1)))
        if inertia < best[0]:
            best = (inertia, c, labels)
    return best[1], best[2]


def cluster_means(labels: np.ndarray, values: np.ndarray, k: int, prior: float) -> np.ndarray:
    """(k, m) per-cluster means of ``values`` (N, m) over observed entries, shrunk towards the global
    column means by ``prior`` pseudo-observations; NaN where a model is never observed at all."""
    obs = np.isfinite(values)
    v = np.where(obs, values, 0.0)
    sums = np.zeros((k, values.shape[1]))
    counts = np.zeros((k, values.shape[1]))
    np.add.at(sums, labels, v)
    np.add.at(counts, labels, obs.astype(np.float64))
    total = obs.sum(axis=0)
    glob = np.where(total > 0, v.sum(axis=0) / np.maximum(total, 1), np.nan)
    g = np.nan_to_num(glob)
    out = (sums + prior * g) / np.maximum(counts + prior, 1e-12)
    out = np.where(counts + prior > 0, out, g)
    return np.where(np.isnan(glob)[None, :], np.nan, out)


class ClusterRouter(TableRouter):
    """Per-cluster quality and cost tables over spherical k-means centroids.

    State: ``centroids`` (k, d), ``quality`` (k, m), ``cost`` (k, m) (NaN where a model's cost is unknown).
    """

    kind = "cluster"
    Config = ClusterConfig
    key_name, rows_are = "centroids", "clusters"
    state_arrays = ("centroids", "quality", "cost")

    def weights(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, k) cluster weights of each prompt (one-hot, or softmax with a temperature)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.centroids_.shape[1]:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {self.centroids_.shape[1]})")
        sims = _normalise(embeddings) @ self.centroids_.T.astype(np.float64)
        t = float(self.config.temperature)
        if t > 0:
            w = np.exp((sims - sims.max(axis=1, keepdims=True)) / t)
            return w / w.sum(axis=1, keepdims=True)
        w = np.zeros_like(sims)
        w[np.arange(len(sims)), sims.argmax(axis=1)] = 1.0
        return w

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights(embeddings)
        quality = w @ self.quality_.astype(np.float64)
        fallback = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        cost_table = np.where(np.isnan(self.cost_), fallback[None, :], self.cost_).astype(np.float64)
        return quality, w @ cost_table


def fit_cluster(config: ClusterConfig, ctx: FitContext) -> tuple[ClusterRouter, dict]:
    """k-means for each candidate k; the one with the best validation score is kept."""

    def build(k: int, train):
        rng = np.random.default_rng(ctx.seed)
        centroids, labels = spherical_kmeans(ctx.train_embeddings, k, rng, config.n_init, config.max_iter)
        k_eff = centroids.shape[0]
        router = ClusterRouter(replace(config, k=k_eff), **ctx.router_kwargs(encoder=True))
        return k_eff, router.set_tables(centroids, cluster_means(labels, train.quality, k_eff, config.prior),
                                        cluster_means(labels, train.cost, k_eff, config.prior))

    return fit_best_k(config, ctx, "cluster", 10, build)
