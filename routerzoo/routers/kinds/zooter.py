"""Reward distillation (Zooter): a softmax over the candidates, distilled from each prompt's rewards.

Zooter (Lu et al., 2023) trains a small network to output, for a prompt, the distribution
``softmax(r / T)`` of the candidates' rewards (here: the observed quality), with a KL-divergence loss
(:mod:`routerzoo.training.zooter`). The temperature ``T`` sets how sharp the targets are. Tag-based
label enhancement mixes each prompt's target with the mean target of its tag (the dataset's
category, when present), which smooths the noisy single-outcome labels of benchmark tables.

Router contract: a distribution is not a quality, yet λ-argmax trades quality against cost. Since
``T·log softmax(q/T)_j = q_j − T·logsumexp(q/T)``, the centred log-probabilities
``T·(log p̂_j − mean_k log p̂_k)`` would recover each model's quality minus the prompt's mean quality
if targets were softmax(E[q]/T); a second head predicts that mean (the prompt's difficulty). With
noisy 0/1 outcomes the learnt distribution is an average of near one-hot targets, which compresses
those gaps, so the factor ``s`` replacing T is fitted after training by least squares of the
observed centred qualities on the centred log-probabilities (validation split, else training). So
``q̂_j = μ̂(x) + s·(log p̂_j − mean_k log p̂_k)``, clipped to the quality scale: its argmax is the
softmax's argmax, and it is on the scale the cost weight is defined on. Cost is each model's mean training cost at the prices in force
(Zooter does not model cost per prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.kinds.mlp import EmbeddingNetConfig, ScaledNetworkRouter, embedding_tensor, mlp_trunk


@dataclass
class ZooterConfig(EmbeddingNetConfig):
    """Reward distillation hyper-parameters (and the fields of :class:`EmbeddingNetConfig`).

    Attributes:
        temperature: T of the target distribution softmax(quality / T), on the quality scale;
            smaller is sharper (T → 0: the best model only).
        tag_enhancement: mix each prompt's target with its category's mean target (prompts
            without a category keep their own).
        tag_weight: weight of the category's mean target in that mix, in [0, 1].
        mean_loss_weight: weight of the mean-quality head's squared error against the KL loss.
    """

    temperature: float = 0.1
    tag_enhancement: bool = False
    tag_weight: float = 0.3
    mean_loss_weight: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"router.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.tag_weight <= 1:
            raise ConfigError(f"router.tag_weight must be in [0, 1], got {self.tag_weight}")
        if self.mean_loss_weight < 0:
            raise ConfigError(f"router.mean_loss_weight must be >= 0, got {self.mean_loss_weight}")


def build_network(in_dim: int, n_models: int, hidden: list[int], dropout: float):
    """embedding (B, d) → (logits over the candidates (B, m), mean quality (B,))."""
    import torch
    from torch import nn

    class DistilNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk, d = mlp_trunk(in_dim, hidden, dropout)
            self.logits_head = nn.Linear(d, n_models)
            self.mean_head = nn.Linear(d, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.trunk(x)
            return self.logits_head(z), self.mean_head(z).squeeze(1)

    return DistilNet()


def reward_targets(quality: np.ndarray, temperature: float, categories=None, tag_weight: float = 0.0) -> np.ndarray:
    """Per-prompt target distributions over the candidates.

    Args:
        quality: (n, m) observed rewards, NaN where unobserved (probability 0 there).
        temperature: softmax temperature T.
        categories: (n,) tags (None entries: no tag) for label enhancement, or None.
        tag_weight: α; a tagged prompt's target is (1 − α)·own + α·(its tag's mean target),
            renormalised over the models observed for the prompt.

    Returns:
        (n, m) rows summing to 1 (rows with no observation are all 0).
    """
    observed = ~np.isnan(quality)
    z = np.where(observed, np.nan_to_num(quality) / temperature, -np.inf)
    zmax = np.max(np.where(observed, z, -np.inf), axis=1, keepdims=True)
    e = np.where(observed, np.exp(z - np.where(np.isfinite(zmax), zmax, 0.0)), 0.0)
    p = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)
    if categories is None or tag_weight <= 0:
        return p
    cats = np.asarray([c if c is not None and c == c else "" for c in categories], dtype=object)
    out = p.copy()
    for tag in set(cats) - {""}:
        rows = cats == tag
        mixed = (1 - tag_weight) * p[rows] + tag_weight * p[rows].mean(axis=0, keepdims=True)
        mixed = np.where(observed[rows], mixed, 0.0)
        out[rows] = mixed / np.maximum(mixed.sum(axis=1, keepdims=True), 1e-300)
    return out


class ZooterRouter(ScaledNetworkRouter):
    """Softmax over candidates distilled from rewards (see the module docstring).

    State: the network's weights (``net.*``) and ``quality_scale`` (1,), the factor s.
    """

    kind = "zooter"
    Config = ZooterConfig
    build_network = staticmethod(build_network)
    scale_name = "quality_scale"
    first_head = "logits_head"
    scale_may_be_zero = True

    def distribution_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """The distilled distribution over the candidates, (n, m) rows summing to 1."""
        import torch

        self._check_fitted()
        logits, _ = self._forward(np.asarray(embeddings, dtype=np.float32))
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(np.float64)

    def _forward(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            logits, mean = self.net_(embedding_tensor(embeddings, self._in_dim()))
        return logits.numpy(), mean.numpy()

    def centred_log_probs(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log p̂ − its row mean (n, m), predicted mean quality (n,)) from embeddings (n, d)."""
        logits, mean = self._forward(embeddings)
        logits = logits.astype(np.float64)
        return logits - logits.mean(axis=1, keepdims=True), mean.astype(np.float64)

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, None]:
        centred, mean = self.centred_log_probs(embeddings)
        quality = mean[:, None] + self.quality_scale_ * centred
        return np.clip(quality, *self.quality_range), None


def fit_quality_scale(centred: np.ndarray, quality: np.ndarray, fallback: float) -> float:
    """Least-squares s >= 0 of (q_ij − mean_i q) ≈ s·ℓ_ij over observed entries.

    Args:
        centred: (n, m) centred log-probabilities ℓ.
        quality: (n, m) observed quality, NaN where unobserved.
        fallback: s when nothing is observed (the temperature).
    """
    observed = ~np.isnan(quality)
    if observed.sum() == 0:
        return float(fallback)
    q_mean = np.nanmean(np.where(observed, quality, np.nan), axis=1, keepdims=True)
    # centre ℓ over the observed models of each row, as q is
    l_mean = np.sum(np.where(observed, centred, 0.0), axis=1, keepdims=True) / np.maximum(observed.sum(1, keepdims=True), 1)
    y = np.where(observed, np.nan_to_num(quality - q_mean), 0.0)
    x = np.where(observed, centred - l_mean, 0.0)
    denom = float((x * x).sum())
    return float(max((x * y).sum() / denom, 0.0)) if denom > 0 else float(fallback)
