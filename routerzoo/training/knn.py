"""Fit the kNN router; k is chosen on the validation split when not given."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.knn import KNNRouter
from routerzoo.training.context import FitContext


@dataclass
class KNNConfig:
    """kNN router hyper-parameters.

    Attributes:
        k: neighbours; None picks the value of ``k_candidates`` with the lowest validation error
            of predicted quality (mean squared error over observed outcomes).
        k_candidates: values tried when ``k`` is None.
        temperature: softmax temperature over cosine similarities; 0 weighs neighbours equally.
    """

    k: int | None = None
    k_candidates: list[int] = field(default_factory=lambda: [5, 10, 20, 40, 80])
    temperature: float = 0.0

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise ConfigError(f"--model.k must be >= 1, got {self.k}")
        if self.temperature < 0:
            raise ConfigError(f"--model.temperature must be >= 0, got {self.temperature}")


def _val_mse(router: KNNRouter, ctx: FitContext) -> float:
    pred = router.predict_embeddings(ctx.val_embeddings).quality
    observed = ~np.isnan(ctx.val.quality)
    return float(np.mean((pred[observed] - ctx.val.quality[observed]) ** 2))


def fit_knn(config: KNNConfig, ctx: FitContext) -> tuple[KNNRouter, dict]:
    """Returns the router and metrics to log (validation MSE per candidate k)."""
    params = asdict(config)
    metrics: dict = {}
    ks = [config.k] if config.k is not None else sorted({min(k, len(ctx.train)) for k in config.k_candidates})
    best = None
    for k in ks:
        router = KNNRouter(**ctx.router_kwargs(dict(params, k=k), encoder=True))
        router.fit_arrays(ctx.train_embeddings, ctx.train.quality, ctx.train.cost)
        if len(ctx.val) == 0:
            best = (float("nan"), k, router)
            break
        mse = _val_mse(router, ctx)
        metrics[f"val_mse_k{k}"] = mse
        if best is None or mse < best[0]:
            best = (mse, k, router)
    mse, k, router = best
    metrics.update({"val_mse": mse, "k": k})
    return router, metrics
