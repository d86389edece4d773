"""Scalarised reward regression (MetaLLM-style): one network for every cost weight.

MetaLLM trains a router on the scalar reward ``quality − λ·cost`` of each model. Here λ is an input
of the network, sampled log-uniformly during training (:mod:`routerzoo.training.scalarised`), so one
trained model predicts ``r̂_j(x, λ)`` for every cost weight instead of one model per λ.

How it fits the router contract (quality and cost per model, decisions by a policy): the network's
reward at λ = 0 *is* the predicted quality, ``q̂_j(x) = r̂_j(x, 0)``; the predicted cost is the
reward's slope in λ, ``ĉ_j(x) = −∂r̂_j/∂λ``, estimated by least squares over a grid of cost weights
spanning the training range (:attr:`ScalarisedConfig.slope_grid`). The :class:`Prediction`
``(q̂, ĉ)`` therefore feeds every policy (λ-argmax, threshold, budget assignment), and ĉ goes
through the cost model, so new prices change decisions without retraining. Where the network learnt
a reward that is not linear in λ (it can: the input lets it), :meth:`ScalarisedRouter.rewards`
gives the network's own ``r̂(x, λ)`` at any λ, whose argmax is MetaLLM's decision at the training
prices; the linearised Prediction agrees with it at λ = 0 exactly.

λ is in quality per USD like every cost weight in routerzoo; the network sees it scaled by the
training set's typical cost per prompt (``cost_scale``: the median of the models' mean costs), so
that one range of sampled weights suits datasets whose costs are $1e-5 or $1 per prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.kinds.mlp import EmbeddingNetConfig, ScaledNetworkRouter, embedding_tensor, mlp_trunk


@dataclass
class ScalarisedConfig(EmbeddingNetConfig):
    """Scalarised reward regression hyper-parameters (and the fields of :class:`EmbeddingNetConfig`).

    Attributes:
        lambda_range: (low, high) of the scaled cost weight λ·cost_scale sampled log-uniformly in
            training; 1 means one typical prompt's cost is worth one unit of quality.
        zero_share: share of training samples drawn at λ = 0 (pure quality), which anchors q̂.
        draws: cost weights drawn per prompt per epoch.
        slope_grid: scaled cost weights at which the reward's slope in λ (the predicted cost) is
            estimated by least squares; within ``lambda_range``.
        batch_size: (prompt, λ) samples per step.
    """

    lambda_range: list[float] = field(default_factory=lambda: [0.01, 10.0])
    zero_share: float = 0.2
    draws: int = 4
    slope_grid: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.5, 1.0])
    batch_size: int = 256

    def __post_init__(self):
        super().__post_init__()
        lo_hi = self.lambda_range
        if len(lo_hi) != 2 or not all(math.isfinite(v) for v in lo_hi) or not 0 < lo_hi[0] < lo_hi[1]:
            raise ConfigError(f"router.lambda_range must be [low, high] with 0 < low < high, got {lo_hi}")
        if not 0 <= self.zero_share < 1:
            raise ConfigError(f"router.zero_share must be in [0, 1), got {self.zero_share}")
        if not self.slope_grid or any(not (math.isfinite(v) and v > 0) for v in self.slope_grid):
            raise ConfigError(f"router.slope_grid must be positive scaled cost weights, got {self.slope_grid}")
        if self.draws < 1:
            raise ConfigError(f"router.draws must be >= 1, got {self.draws}")


def build_network(in_dim: int, n_models: int, hidden: list[int], dropout: float):
    """(embedding (B, d), scaled cost weight λ̃ (B, 1)) → scaled reward per model (B, m).

    The trunk reads the embedding and λ̃ (as log1p(λ̃) and λ̃/(1+λ̃), both 0 at λ = 0); two heads
    give a quality part ``a`` and a log-cost part ``b``, and the output is ``a − λ̃·exp(b)``. Both
    parts depend on λ̃, so the reward may bend in λ; the product form keeps the large rewards of
    expensive models at high λ easy to fit (a plain head would have to output them unaided).
    """
    import torch
    from torch import nn

    class RewardNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk, d = mlp_trunk(in_dim + 2, hidden, dropout)
            self.quality_head = nn.Linear(d, n_models)
            self.cost_head = nn.Linear(d, n_models)

        def forward(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
            z = self.trunk(torch.cat([x, torch.log1p(lam), lam / (1 + lam)], dim=1))
            return self.quality_head(z) - lam * torch.exp(self.cost_head(z).clamp(max=20.0))

    return RewardNet()


class ScalarisedRouter(ScaledNetworkRouter):
    """Predicts ``quality − λ·cost`` per model with λ as an input (see the module docstring).

    State: the network (``net.*``) and ``cost_scale`` (1,), USD of a typical prompt at training prices.
    """

    kind = "scalarised"
    Config = ScalarisedConfig
    build_network = staticmethod(build_network)
    scale_name = "cost_scale"
    first_head = "quality_head"
    extra_inputs = 2  # the network also reads the scaled cost weight (two encodings of it)

    def _scaled_rewards(self, embeddings: np.ndarray, scaled: float) -> np.ndarray:
        """(n, m) network output at one scaled cost weight."""
        import torch

        x = embedding_tensor(embeddings, self._in_dim())
        lam = torch.full((len(embeddings), 1), float(scaled))
        with torch.no_grad():
            return self.net_(x, lam).numpy().astype(np.float64)

    def rewards_embeddings(self, embeddings: np.ndarray, cost_weight: float) -> np.ndarray:
        """The network's reward ``q − λ·c`` per model at cost weight λ (quality per USD, training prices).

        Args:
            embeddings: (n, d) prompt embeddings.
            cost_weight: λ >= 0.

        Returns:
            (n, m) predicted rewards.
        """
        self._check_fitted()
        if not (math.isfinite(cost_weight) and cost_weight >= 0):
            raise UserError(f"cost_weight must be a finite number >= 0, got {cost_weight}")
        return self._scaled_rewards(np.asarray(embeddings, dtype=np.float32), cost_weight * self.cost_scale_)

    def rewards(self, prompts: list[str], cost_weight: float) -> np.ndarray:
        """:meth:`rewards_embeddings` from prompt texts: (n, m)."""
        from routerzoo.routers.core.base import check_prompts

        return self.rewards_embeddings(self.embed(check_prompts(prompts)), cost_weight)

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        quality = self._scaled_rewards(embeddings, 0.0)
        grid = np.asarray(self.config.slope_grid, dtype=np.float64)
        drops = np.stack([quality - self._scaled_rewards(embeddings, g) for g in grid])  # (G, n, m)
        # least-squares slope through the origin: reward drop per unit of scaled λ = cost / cost_scale
        slope = np.tensordot(grid, drops, axes=(0, 0)) / float(grid @ grid)
        # a negative slope (a model predicted to get *better* as cost matters more) is noise: cost >= 0
        cost = np.maximum(slope, 0.0) * self.cost_scale_
        # a regression can overshoot the quality scale; the contract keeps predictions on it
        return np.clip(quality, *self.quality_range), cost
