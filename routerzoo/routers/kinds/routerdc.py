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
from routerzoo.routers.core.base import Router
from routerzoo.routers.kinds.mf import predict_log_cost
from routerzoo.routers.kinds.mlp import check_accelerator_field


@dataclass
class RouterDCConfig:
    """Dual-contrastive router hyper-parameters.

    Attributes:
        dim: size of the model embeddings and of the prompt projection.
        temperature: temperature of the cosine scores (sample-LLM loss and routing scores).
        top_k: models per prompt counted as positives (ties at the k-th quality included).
        last_k: models per prompt counted as negatives (ties included; never a positive).
        sample_weight: weight of the sample-sample loss (0 turns it off).
        sample_temperature: temperature of the sample-sample loss.
        n_clusters: k-means clusters of the training embeddings for the sample-sample loss.
        dropout: dropout on the prompt embedding during training.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: prompts per step (the sample-sample loss contrasts prompts within a batch).
        max_epochs: upper bound on epochs.
        patience: epochs without validation improvement before stopping (the best epoch is kept).
        predict_cost: learn each model's per-prompt log cost (ridge regression on the embedding);
            else every prompt gets the model's mean training cost.
        cost_ridge: L2 penalty of the cost regression.
        accelerator: Lightning accelerator ("auto", "cpu", "gpu", "cuda", "mps").
        devices: Lightning devices (e.g. 2 with strategy "ddp").
        strategy: Lightning strategy ("auto", "ddp", ...).
    """

    dim: int = 64
    temperature: float = 0.5
    top_k: int = 3
    last_k: int = 3
    sample_weight: float = 1.0
    sample_temperature: float = 0.2
    n_clusters: int = 5
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 5
    predict_cost: bool = True
    cost_ridge: float = 1.0
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"

    def __post_init__(self):
        if self.dim < 1:
            raise ConfigError(f"router.dim must be >= 1, got {self.dim}")
        if self.temperature <= 0 or self.sample_temperature <= 0:
            raise ConfigError("router.temperature and router.sample_temperature must be > 0")
        if self.top_k < 1 or self.last_k < 1:
            raise ConfigError(f"router.top_k and router.last_k must be >= 1, got {self.top_k} and {self.last_k}")
        if self.sample_weight < 0:
            raise ConfigError(f"router.sample_weight must be >= 0, got {self.sample_weight}")
        if self.n_clusters < 2:
            raise ConfigError(f"router.n_clusters must be >= 2, got {self.n_clusters}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"router.dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("router.lr must be > 0 and router.weight_decay >= 0")
        if self.batch_size < 2 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("router.batch_size must be >= 2, router.max_epochs and router.patience >= 1")
        if self.cost_ridge < 0:
            raise ConfigError(f"router.cost_ridge must be >= 0, got {self.cost_ridge}")
        check_accelerator_field(self)


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


class RouterDCRouter(Router):
    """Cosine scores of projected prompts against learned model embeddings, calibrated per model.

    State: ``proj_weight`` (dim, d), ``proj_bias`` (dim,), ``model_emb`` (m, dim), ``platt`` (2, m)
    (slope and intercept per model), and with ``predict_cost`` the cost regression ``cost_weight``
    (d + 1, m) and ``cost_smear`` (m,).
    """

    kind = "routerdc"
    Config = RouterDCConfig
    uses_embeddings = True

    def set_params(self, proj_weight, proj_bias, model_emb, platt, cost_weight=None, cost_smear=None) -> RouterDCRouter:
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self.proj_weight_, self.proj_bias_, self.model_emb_ = f32(proj_weight), f32(proj_bias), f32(model_emb)
        self.platt_ = f32(platt)
        self.cost_weight_ = None if cost_weight is None else f32(cost_weight)
        self.cost_smear_ = None if cost_smear is None else f32(cost_smear)
        return self

    def fitted_attributes(self) -> list[str]:
        return ["proj_weight_", "model_emb_", "platt_"]

    def state(self) -> dict[str, np.ndarray]:
        out = {"proj_weight": self.proj_weight_, "proj_bias": self.proj_bias_, "model_emb": self.model_emb_,
               "platt": self.platt_}
        if self.cost_weight_ is not None:
            out["cost_weight"], out["cost_smear"] = self.cost_weight_, self.cost_smear_
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        m, dim = len(self.models), self.config.dim
        pw = self._tensor(tensors, "proj_weight", (dim, None))
        d = pw.shape[1]
        cost_w = cost_s = None
        if self.config.predict_cost and "cost_weight" in tensors:
            cost_w, cost_s = self._tensor(tensors, "cost_weight", (d + 1, m)), self._tensor(tensors, "cost_smear", (m,))
        self.set_params(pw, self._tensor(tensors, "proj_bias", (dim,)), self._tensor(tensors, "model_emb", (m, dim)),
                        self._tensor(tensors, "platt", (2, m)), cost_w, cost_s)

    def similarity_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) scores s_j(x) = cos(z(x), k_j) / temperature (float64)."""
        d = self.proj_weight_.shape[1]
        if embeddings.ndim != 2 or embeddings.shape[1] != d:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {d})")
        z = _normalise(embeddings.astype(np.float64) @ self.proj_weight_.T.astype(np.float64) + self.proj_bias_)
        k = _normalise(self.model_emb_.astype(np.float64))
        return (z @ k.T) / self.config.temperature

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.similarity_scores(embeddings)
        a, b = self.platt_.astype(np.float64)
        quality = 1.0 / (1.0 + np.exp(-(a * s + b)))
        if self.cost_weight_ is None:
            return quality, None
        fallback = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        return quality, predict_log_cost(embeddings, self.cost_weight_, self.cost_smear_, fallback)
