"""MLP classification router: per-model success probability from a prompt embedding.

The network is plain torch (no Lightning) so the same class serves inference; training wraps it in
a LightningModule (:mod:`routerzoo.training.mlp`). One sigmoid output per model (multi-label), and
optionally a second head predicting each model's log cost, because cost varies per prompt (long
answers cost more) and the decision weighs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router
from routerzoo.routers.core.features import PromptFeatures, feature_matrix
from routerzoo.routers.core.fit_config import NetworkFitConfig


@dataclass
class EmbeddingNetConfig(NetworkFitConfig):
    """The fields of an MLP trunk over prompt embeddings (MLP, scalarised, Zooter), and the fit
    fields of :class:`~routerzoo.routers.core.fit_config.NetworkFitConfig`.

    Attributes:
        hidden: widths of the hidden layers.
        dropout: dropout after each hidden layer.
    """

    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"router.dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"router.hidden widths must be positive, got {self.hidden}")


def mlp_trunk(in_dim: int, hidden: Sequence[int], dropout: float):
    """(Linear → GELU → Dropout) per hidden width; returns the ``nn.Sequential`` and its output width."""
    from torch import nn

    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
        d = h
    return nn.Sequential(*layers), d


def embedding_tensor(embeddings: np.ndarray, in_dim: int):
    """``embeddings`` (n, in_dim) as a float32 tensor; a ValueError naming the shape the network needs."""
    import torch

    if embeddings.ndim != 2 or embeddings.shape[1] != in_dim:
        raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {in_dim})")
    return torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))


@dataclass
class MLPConfig(EmbeddingNetConfig):
    """MLP router hyper-parameters (and the fields of :class:`EmbeddingNetConfig`).

    Attributes:
        predict_cost: also learn each model's per-prompt log cost (else the mean cost is used).
        cost_loss_weight: weight of the cost loss against the quality BCE.
        features: inputs beyond the prompt embedding (prompt length, category); off by default.
    """

    dropout: float = 0.2
    predict_cost: bool = True
    cost_loss_weight: float = 0.5
    max_epochs: int = 100
    patience: int = 8
    features: PromptFeatures = field(default_factory=PromptFeatures)


def build_network(in_dim: int, n_models: int, hidden: Sequence[int], dropout: float, predict_cost: bool):
    """The MLP: shared trunk, a quality head (m logits) and an optional cost head (m log costs)."""
    import torch
    from torch import nn

    class SuccessNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk, d = mlp_trunk(in_dim, hidden, dropout)
            self.quality_head = nn.Linear(d, n_models)
            self.cost_head = nn.Linear(d, n_models) if predict_cost else None

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """x (B, d) → quality logits (B, m), standardised log-cost (B, m) or None."""
            z = self.trunk(x)
            return self.quality_head(z), (self.cost_head(z) if self.cost_head is not None else None)

    return SuccessNet()


class MLPRouter(Router):
    """Multi-label MLP over embeddings.

    State: the network's weights (``net.*``) and the cost head's target standardisation
    ``log_cost_mean`` / ``log_cost_std`` (m,).
    """

    kind = "mlp"
    Config = MLPConfig
    uses_embeddings = True

    def network(self, in_dim: int):
        c = self.config
        return build_network(in_dim, len(self.models), c.hidden, c.dropout, c.predict_cost)

    def set_network(self, net, log_cost_mean: np.ndarray, log_cost_std: np.ndarray) -> MLPRouter:
        self.net_ = net.eval()
        self.log_cost_mean_ = np.asarray(log_cost_mean, dtype=np.float32)
        self.log_cost_std_ = np.asarray(log_cost_std, dtype=np.float32)
        return self

    def fitted_attributes(self) -> list[str]:
        return ["net_"]

    def state(self) -> dict[str, np.ndarray]:
        out = self._module_state(self.net_)
        out["log_cost_mean"] = self.log_cost_mean_
        out["log_cost_std"] = self.log_cost_std_
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        m = len(self.models)
        first = "net.trunk.0.weight" if self.config.hidden else "net.quality_head.weight"
        in_dim = self._tensor(tensors, first, (self.config.hidden[0] if self.config.hidden else m, None)).shape[1]
        net = self.network(in_dim)
        self._load_module(net, tensors, f"an MLP with hidden={self.config.hidden}")
        self.set_network(net, self._tensor(tensors, "log_cost_mean", (m,)), self._tensor(tensors, "log_cost_std", (m,)))

    def _predict_prompts(self, prompts: list[str], categories=None) -> tuple[np.ndarray, np.ndarray | None]:
        return self._predict_inputs(prompts, self.embed(prompts), categories)

    def _predict_inputs(self, prompts: list[str], embeddings: np.ndarray, categories=None):
        if self.config.features.width:
            embeddings = np.hstack([embeddings, feature_matrix(self.config.features, prompts, categories)])
        return self._predict_embeddings(embeddings)

    def predict_with_categories(self, prompts: Sequence[str], categories: Sequence[str | None]):
        """:meth:`predict` for callers that know each prompt's category (None: unknown), shapes (n, m)."""
        from routerzoo.routers.core.base import check_prompts

        prompts = check_prompts(prompts)
        self._check_fitted()
        quality, cost = self._predict_prompts(prompts, categories)
        return self._finish(quality, cost, len(prompts))

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """From embeddings (n, d), or with :attr:`MLPConfig.features` on, embeddings and features (n, d + k)."""
        import torch

        in_dim = next(self.net_.parameters()).shape[1]
        width = self.config.features.width
        if width and embeddings.ndim == 2 and embeddings.shape[1] == in_dim - width:
            raise ValueError(f"this MLP also reads {width} prompt feature(s) (router.features): predict from the "
                             "prompts, or pass them with the embeddings (predict_embeddings(embeddings, prompts))")
        with torch.no_grad():
            logits, log_cost = self.net_(embedding_tensor(embeddings, in_dim))
        quality = torch.sigmoid(logits).numpy().astype(np.float64)
        if log_cost is None:
            return quality, None
        return quality, np.exp(log_cost.numpy() * self.log_cost_std_ + self.log_cost_mean_).astype(np.float64)


class ScaledNetworkRouter(Router):
    """A router whose state is an embedding network plus one learned positive scalar (its name is
    ``scale_name``; the attribute ``<scale_name>_``): the scalarised and reward-distillation routers.

    Subclasses set ``build_network`` (in_dim, n_models, hidden, dropout), ``first_head`` (the head
    whose weights show the input width when there is no hidden layer), ``extra_inputs`` (inputs the
    network adds to the embedding) and whether the scalar may be 0.
    """

    scale_name: ClassVar[str]
    first_head: ClassVar[str]
    extra_inputs: ClassVar[int] = 0
    scale_may_be_zero: ClassVar[bool] = False
    uses_embeddings = True

    def network(self, in_dim: int):
        return self.build_network(in_dim, len(self.models), self.config.hidden, self.config.dropout)

    def set_network(self, net, scale: float):
        self.net_ = net.eval()
        setattr(self, f"{self.scale_name}_", float(scale))
        return self

    def fitted_attributes(self) -> list[str]:
        return ["net_", f"{self.scale_name}_"]

    def state(self) -> dict[str, np.ndarray]:
        out = self._module_state(self.net_)
        out[self.scale_name] = np.array([getattr(self, f"{self.scale_name}_")], dtype=np.float64)
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        first = "net.trunk.0.weight" if self.config.hidden else f"net.{self.first_head}.weight"
        rows = self.config.hidden[0] if self.config.hidden else len(self.models)
        net = self.network(self._tensor(tensors, first, (rows, None)).shape[1] - self.extra_inputs)
        self._load_module(net, tensors, f"hidden={self.config.hidden}")
        scale = float(self._tensor(tensors, self.scale_name, (1,))[0])
        if self.scale_may_be_zero and not (math.isfinite(scale) and scale >= 0):
            raise UserError(f"weights: {self.scale_name} must be a number >= 0, got {scale}")
        if not self.scale_may_be_zero and not (math.isfinite(scale) and scale > 0):
            raise UserError(f"weights: {self.scale_name} must be a positive number, got {scale}")
        self.set_network(net, scale)

    def _in_dim(self) -> int:
        return next(self.net_.parameters()).shape[1] - self.extra_inputs
