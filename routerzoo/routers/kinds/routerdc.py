"""Dual-contrastive router (RouterDC, Chen et al., 2024), on frozen prompt embeddings.

Each candidate j has a learned embedding k_j; a prompt's sentence embedding x is mapped by a
trainable projection to z(x) = normalise(W x + c); the score of model j is the cosine similarity
s_j(x) = z(x) · normalise(k_j) / temperature. Two contrastive losses train it
(:mod:`routerzoo.training.routerdc`):

* sample-LLM: for each training prompt, each of its top-k models (by observed quality) must
  out-score its bottom-k models: −log(e^{s+} / (e^{s+} + Σ_neg e^{s−}));
* sample-sample: prompts of the same k-means cluster (of the training embeddings) attract in the
  projected space and prompts of other clusters repel, which keeps similar prompts routed alike
  (RouterDC's remedy for unstable training when many prompts have tied outcomes).

RouterDC routes by argmax of the scores; routing here also weighs cost, which needs a quality on a
probability scale, so each model's score is calibrated to its success probability by a per-model
logistic fit on the training outcomes (Platt scaling, q_j = sigmoid(a_j·s_j + b_j), a_j ≥ 0, so
each model's ordering of prompts is unchanged). Costs: the ``mf`` router's ridge regression of log
cost on the embedding, else each model's mean cost. Inference is numpy only.

Unlike the paper, the encoder stays frozen (the projection is what learns): training is
minutes on CPU and the embeddings are shared with every other router through the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.core.fit_config import NetworkFitConfig
from routerzoo.routers.kinds.mf import ProjectionFields, ProjectionRouter


@dataclass
class RouterDCConfig(ProjectionFields, NetworkFitConfig):
    """Dual-contrastive router hyper-parameters (and the fields of
    :class:`~routerzoo.routers.kinds.mf.ProjectionFields` and :class:`NetworkFitConfig`).

    Attributes:
        temperature: temperature of the cosine scores (sample-LLM loss and routing scores).
        top_k: models per prompt counted as positives (ties at the k-th quality included).
        last_k: models per prompt counted as negatives (ties included; never a positive).
        sample_weight: weight of the sample-sample loss (0 turns it off).
        sample_temperature: temperature of the sample-sample loss.
        n_clusters: k-means clusters of the training embeddings for the sample-sample loss.
        batch_size: prompts per step (the sample-sample loss contrasts prompts within a batch).
    """

    dim: int = 64
    temperature: float = 0.5
    top_k: int = 3
    last_k: int = 3
    sample_weight: float = 1.0
    sample_temperature: float = 0.2
    n_clusters: int = 5
    weight_decay: float = 1e-4
    patience: int = 5

    def __post_init__(self):
        super().__post_init__()
        if self.temperature <= 0 or self.sample_temperature <= 0:
            raise ConfigError("router.temperature and router.sample_temperature must be > 0")
        if self.top_k < 1 or self.last_k < 1:
            raise ConfigError(f"router.top_k and router.last_k must be >= 1, got {self.top_k} and {self.last_k}")
        if self.sample_weight < 0:
            raise ConfigError(f"router.sample_weight must be >= 0, got {self.sample_weight}")
        if self.n_clusters < 2:
            raise ConfigError(f"router.n_clusters must be >= 2, got {self.n_clusters}")
        if self.batch_size < 2:  # the sample-sample loss needs two prompts in a batch
            raise ConfigError(f"router.batch_size must be >= 2, got {self.batch_size}")


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


class RouterDCRouter(ProjectionRouter):
    """Cosine scores of projected prompts against learned model embeddings, calibrated per model.

    State: :class:`~routerzoo.routers.kinds.mf.ProjectionRouter`'s, with ``platt`` (2, m) (slope
    and intercept per model).
    """

    kind = "routerdc"
    Config = RouterDCConfig

    def set_params(self, proj_weight, proj_bias, model_emb, platt, cost_weight=None, cost_smear=None) -> RouterDCRouter:
        self._set_projection(proj_weight, proj_bias, model_emb, cost_weight, cost_smear)
        self.platt_ = np.ascontiguousarray(platt, dtype=np.float32)
        return self

    def fitted_attributes(self) -> list[str]:
        return [*super().fitted_attributes(), "platt_"]

    def _head_state(self) -> dict[str, np.ndarray]:
        return {"platt": self.platt_}

    def _load_head(self, tensors: dict[str, np.ndarray]) -> tuple:
        return (self._tensor(tensors, "platt", (2, len(self.models))),)

    def similarity_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) scores s_j(x) = cos(z(x), k_j) / temperature (float64)."""
        z = _normalise(self.project(embeddings))
        k = _normalise(self.model_emb_.astype(np.float64))
        return (z @ k.T) / self.config.temperature

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.similarity_scores(embeddings)
        a, b = self.platt_.astype(np.float64)
        return self._with_cost(embeddings, 1.0 / (1.0 + np.exp(-(a * s + b))))
