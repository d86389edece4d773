"""Two-model threshold (RouteLLM's form): the strong model where q̂_strong − q̂_weak ≥ threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.policies.base import BatchPolicy


@dataclass
class ThresholdConfig:
    """Two-model threshold policy.

    Attributes:
        strong: the strong (expensive) model.
        weak: the weak (cheap) model.
        threshold: send to ``strong`` when its predicted quality exceeds ``weak``'s by at least this.
    """

    strong: str = ""
    weak: str = ""
    threshold: float = 0.0

    def __post_init__(self):
        if not self.strong or not self.weak:
            raise ConfigError("the threshold policy needs both strong and weak model names")
        if self.strong == self.weak:
            raise ConfigError(f"strong and weak are the same model {self.strong!r}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"threshold must be a finite number, got {self.threshold}")


class ThresholdPolicy(BatchPolicy):
    """``strong`` where q̂_strong − q̂_weak ≥ threshold, else ``weak``."""

    kind = "threshold"
    Config = ThresholdConfig

    def check_models(self, models: list[str]) -> tuple[int, int]:
        """Column indices of (strong, weak); a clear error if either is not a candidate."""
        for name in (self.config.strong, self.config.weak):
            if name not in models:
                raise UserError(f"model {name!r} is not a candidate of this router; candidates: {models}")
        return models.index(self.config.strong), models.index(self.config.weak)

    def decide(self, pred: Prediction, models: list[str]) -> np.ndarray:
        i, j = self.check_models(models)
        margin = pred.quality[:, i] - pred.quality[:, j]
        return np.where(margin >= self.config.threshold, i, j).astype(np.int64)
