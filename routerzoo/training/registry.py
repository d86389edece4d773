"""Training registry: router kind → (typed config, fit function, whether it reads embeddings).

Kept apart from :mod:`routerzoo.routers.registry` so inference never imports Lightning.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from routerzoo.errors import UserError


@dataclass(frozen=True)
class TrainerSpec:
    """Where a router kind's config and fit function live (imported on demand)."""

    module: str
    config: str
    fit: str
    uses_embeddings: bool
    summary: str

    def load(self):
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config), getattr(mod, self.fit)


TRAINERS: dict[str, TrainerSpec] = {
    "knn": TrainerSpec("routerzoo.training.knn", "KNNConfig", "fit_knn", True, "k-nearest neighbours on prompt embeddings"),
    "mlp": TrainerSpec("routerzoo.training.mlp", "MLPConfig", "fit_mlp", True, "MLP per-model success classifier (Lightning)"),
    "random": TrainerSpec("routerzoo.training.baselines", "RandomConfig", "fit_random", False, "random scores (floor)"),
    "best-single": TrainerSpec("routerzoo.training.baselines", "BestSingleConfig", "fit_best_single", False, "best model on training data"),
    "oracle": TrainerSpec("routerzoo.training.baselines", "OracleConfig", "fit_oracle", False, "true outcomes of seen prompts (upper bound)"),
}


def get_trainer(kind: str) -> TrainerSpec:
    try:
        return TRAINERS[kind]
    except KeyError:
        raise UserError(f"unknown router {kind!r}; registered: {sorted(TRAINERS)}") from None
