"""MLP classification router: per-model success probability from a prompt embedding.

The network is plain torch (no Lightning) so the same class serves inference; training wraps it in
a LightningModule (:mod:`routerzoo.training.mlp`). One sigmoid output per model (multi-label), and
optionally a second head predicting each model's log cost, because cost varies per prompt (long
answers cost more) and the decision weighs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routerzoo.routers.base import Prediction, Router


def build_network(in_dim: int, n_models: int, hidden: Sequence[int], dropout: float, predict_cost: bool):
    """The MLP: shared trunk, a quality head (m logits) and an optional cost head (m log costs)."""
    import torch
    from torch import nn

    class SuccessNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers: list[nn.Module] = []
            d = in_dim
            for h in hidden:
                layers += [nn.Linear(d, h), nn.GELU(), nn.Dropout(dropout)]
                d = h
            self.trunk = nn.Sequential(*layers)
            self.quality_head = nn.Linear(d, n_models)
            self.cost_head = nn.Linear(d, n_models) if predict_cost else None

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """x (B, d) → quality logits (B, m), standardised log-cost (B, m) or None."""
            z = self.trunk(x)
            return self.quality_head(z), (self.cost_head(z) if self.cost_head is not None else None)

    return SuccessNet()


class MLPRouter(Router):
    """Multi-label MLP over embeddings.

    params: ``hidden`` (layer widths), ``dropout``, ``predict_cost``; the cost head's target
    standardisation ``log_cost_mean`` / ``log_cost_std`` (m,) is stored with the weights.
    """

    kind = "mlp"
    uses_embeddings = True

    def network(self, in_dim: int):
        p = self.params
        return build_network(in_dim, len(self.models), p.get("hidden", [256]), p.get("dropout", 0.1), p.get("predict_cost", True))

    def set_network(self, net, log_cost_mean: np.ndarray, log_cost_std: np.ndarray) -> MLPRouter:
        self.net_ = net.eval()
        self.log_cost_mean_ = np.asarray(log_cost_mean, dtype=np.float32)
        self.log_cost_std_ = np.asarray(log_cost_std, dtype=np.float32)
        return self

    def state(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        out["log_cost_mean"] = self.log_cost_mean_
        out["log_cost_std"] = self.log_cost_std_
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        import torch

        weights = {k[4:]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith("net.")}
        in_dim = weights["quality_head.weight"].shape[1] if not self.params.get("hidden") else weights["trunk.0.weight"].shape[1]
        net = self.network(in_dim)
        net.load_state_dict(weights)
        self.set_network(net, tensors["log_cost_mean"], tensors["log_cost_std"])

    def predict_embeddings(self, embeddings: np.ndarray) -> Prediction:
        import torch

        with torch.no_grad():
            logits, log_cost = self.net_(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
        quality = torch.sigmoid(logits).numpy().astype(np.float64)
        if log_cost is None:
            cost = self._default_cost(len(embeddings))
        else:
            cost = np.exp(log_cost.numpy() * self.log_cost_std_ + self.log_cost_mean_).astype(np.float64)
        return Prediction(quality, cost)
