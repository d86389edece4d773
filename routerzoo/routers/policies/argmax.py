"""λ-argmax: each prompt goes to argmax over models of predicted quality − λ·predicted cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.policies.base import BatchPolicy

#: Utilities this close to the best (relative to max(1, |best|)) count as tied. Prompt embeddings are
#: float32: the same text encoded in another batch (other padding), from the disk cache or on another
#: CPU differs by ~1e-7, and predicted qualities by about as much. Without a tolerance such noise
#: would pick between two equally good models at random; with it they go to the cheaper one.
TIE_TOLERANCE = 1e-6


def decide(quality: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """Index of the chosen model per prompt: argmax of quality − λ·cost.

    Ties (utilities within :data:`TIE_TOLERANCE` of the best) go to the cheaper predicted cost,
    then to the lower index, so with λ = 0 and equal predicted qualities (binary labels) the
    cheapest of the equally good models is chosen, whichever way float noise leans.

    Args:
        quality: (n, m) predicted quality.
        cost: (n, m) predicted USD cost.
        cost_weight: λ >= 0, in quality per USD.

    Returns:
        (n,) int model indices.
    """
    utility = quality - cost_weight * cost if cost_weight != 0 else quality
    best = utility.max(axis=1, keepdims=True)
    tied = utility >= best - TIE_TOLERANCE * np.maximum(1.0, np.abs(best))
    return np.argmin(np.where(tied, cost, np.inf), axis=1)


@dataclass
class ArgmaxConfig:
    """λ-argmax policy.

    Attributes:
        cost_weight: λ >= 0 in quality per USD: how much quality one dollar is worth. 0 picks the
            best predicted model whatever it costs; larger values trade quality for cost.
    """

    cost_weight: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.cost_weight) and self.cost_weight >= 0):
            raise ConfigError(f"cost_weight must be a finite number >= 0, got {self.cost_weight}")


class ArgmaxPolicy(BatchPolicy):
    """Per-prompt argmax of quality − λ·cost (the decision every λ sweep evaluates)."""

    kind = "argmax"
    Config = ArgmaxConfig

    def decide(self, pred: Prediction, models: list[str]) -> np.ndarray:
        return decide(pred.quality, pred.cost, float(self.config.cost_weight))
