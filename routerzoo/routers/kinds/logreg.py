"""Logistic-regression router: one L2-regularised logistic regression per candidate, of the answer's
quality on the prompt's embedding.

The linear member of the family whose non-linear member is the MLP router: no hidden layer, no
Lightning, fitted in closed-form Newton steps (:mod:`routerzoo.routers.core.logistic`), so it trains in
well under a second and is a strong, cheap baseline on tables where a topic direction in embedding
space decides which model answers. Quality in [0, 1] is the (soft) label; a model's cost is the cost
model's mean (it predicts none of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router
from routerzoo.routers.core.logistic import fit_logistic, logistic_proba

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class LogRegConfig:
    """Logistic-regression router hyper-parameters.

    Attributes:
        l2: ridge penalty on the standardised weights (summed-loss scale; larger = smoother).
        iters: most Newton steps per model.
    """

    l2: float = 10.0
    iters: int = 50

    def __post_init__(self):
        if not self.l2 >= 0:
            raise ConfigError(f"router.l2 must be >= 0, got {self.l2}")
        if self.iters < 1:
            raise ConfigError(f"router.iters must be >= 1, got {self.iters}")


class LogRegRouter(Router):
    """P(answer right | prompt embedding) per candidate, one logistic regression each."""

    kind = "logreg"
    Config = LogRegConfig
    uses_embeddings = True

    def fit_arrays(self, embeddings: np.ndarray, quality: np.ndarray) -> LogRegRouter:
        """Fit on (n, d) embeddings and (n, m) quality (NaN: no outcome for that model)."""
        lo, hi = self.quality_range
        d, m = embeddings.shape[1], len(self.models)
        self.params_ = {k: np.zeros((m, d)) for k in ("mean", "scale", "weight")} | {"bias": np.zeros((m, 1))}
        for j in range(m):
            seen = ~np.isnan(quality[:, j])
            if seen.sum() < 2:
                raise UserError(f"logreg: model {self.models[j]!r} has {int(seen.sum())} training outcomes; needs 2")
            y = np.clip((quality[seen, j] - lo) / (hi - lo), 0.0, 1.0)
            p = fit_logistic(embeddings[seen], y, l2=self.config.l2, iters=self.config.iters)
            for key, value in p.items():
                self.params_[key][j] = value
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {f"logreg_{k}": v for k, v in self.params_.items()}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        m = len(self.models)
        w = self._tensor(tensors, "logreg_weight", (m, None))
        d = w.shape[1]
        self.params_ = {"weight": np.asarray(w, dtype=np.float64), "bias": np.asarray(self._tensor(tensors, "logreg_bias", (m, 1)), dtype=np.float64)}
        for key in ("mean", "scale"):
            self.params_[key] = np.asarray(self._tensor(tensors, f"logreg_{key}", (m, d)), dtype=np.float64)
        if (self.params_["scale"] <= 0).any():
            raise UserError("weights: tensor 'logreg_scale' must be positive")

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, None]:
        lo, hi = self.quality_range
        p = self.params_
        cols = [logistic_proba({k: p[k][j] for k in p}, embeddings) for j in range(len(self.models))]
        return lo + (hi - lo) * np.stack(cols, axis=1), None


def fit_logreg(config: LogRegConfig, ctx: FitContext) -> tuple[LogRegRouter, dict]:
    """Fit one logistic regression per candidate on the training outcomes."""
    train = ctx.require_outcomes("logreg")
    router = LogRegRouter(config, **ctx.router_kwargs(encoder=True)).fit_arrays(ctx.train_embeddings, train.quality)
    return router, {"n_train": int(len(train))}
