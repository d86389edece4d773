"""What a quality/cost scorer returns for a batch of prompts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """Per-prompt, per-model predictions.

    Attributes:
        quality: (n, m) predicted quality on the dataset's scale (``Router.quality_range``).
        cost: (n, m) predicted USD cost at the router's current price table.
    """

    quality: np.ndarray
    cost: np.ndarray

    def __len__(self) -> int:
        return int(self.quality.shape[0])

    def __post_init__(self):
        if self.quality.shape != self.cost.shape or self.quality.ndim != 2:
            raise ValueError(f"quality {self.quality.shape} and cost {self.cost.shape} must both be (n, m)")
