"""k-nearest-neighbour router on prompt embeddings.

A prompt's predicted quality (and cost) for each model is the similarity-weighted mean over its k
most similar training prompts. "Rethinking predictive modelling for LLM routing" (2025) finds a
well-tuned kNN often matches complex learned routers, so it is the bar every router must clear.
"""

from __future__ import annotations

import numpy as np

from routerzoo.routers.base import Prediction, Router


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


class KNNRouter(Router):
    """kNN over L2-normalised embeddings (cosine similarity).

    params: ``k`` (neighbours), ``temperature`` (softmax weighting of similarities; 0 = uniform).
    State: reference embeddings (N, d), their quality and cost (N, m) with NaN where unobserved.
    """

    kind = "knn"
    uses_embeddings = True
    _CHUNK = 2048  # queries per similarity block: bounds memory at CHUNK × N floats

    def fit_arrays(self, embeddings: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> KNNRouter:
        """Store the reference set. embeddings (N, d); quality, cost (N, m) with NaN for missing."""
        self.embeddings_ = np.asarray(embeddings, dtype=np.float32)
        self.quality_ = np.asarray(quality, dtype=np.float32)
        self.cost_ = np.asarray(cost, dtype=np.float32)
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings_, "quality": self.quality_, "cost": self.cost_}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.fit_arrays(tensors["embeddings"], tensors["quality"], tensors["cost"])

    def predict_embeddings(self, embeddings: np.ndarray) -> Prediction:
        k = int(self.params.get("k", 20))
        temperature = float(self.params.get("temperature", 0.0))
        q_obs = ~np.isnan(self.quality_)
        c_obs = ~np.isnan(self.cost_)
        q_fallback = np.nanmean(self.quality_, axis=0)
        qs, cs = [], []
        for start in range(0, len(embeddings), self._CHUNK):
            sims = embeddings[start:start + self._CHUNK] @ self.embeddings_.T
            qs.append(knn_average(sims, self.quality_, q_obs, k, temperature, q_fallback))
            cs.append(knn_average(sims, self.cost_, c_obs, k, temperature, self.model_costs))
        m = len(self.models)
        quality = np.concatenate(qs) if qs else np.zeros((0, m))
        cost = np.concatenate(cs) if cs else np.zeros((0, m))
        return Prediction(quality.astype(np.float64), cost.astype(np.float64))
