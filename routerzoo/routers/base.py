"""The router contract.

A router answers one question in batch: for n prompts and its m candidate models, the predicted
quality in [0, 1] of each model's answer (and its predicted USD cost). Every decision is derived
from that:

* ``route(prompts, cost_weight=λ)``: argmax over models of quality − λ·cost (λ in quality per USD;
  λ = 0 picks the best predicted model, large λ the cheapest);
* ``route_threshold(prompts, threshold, strong=, weak=)``: the two-model form, strong when
  q̂_strong − q̂_weak ≥ threshold.

A router artifact is a directory with ``config.json`` (kind, candidate models, prices, encoder,
schema version, hyper-parameters, training lineage) and ``weights.safetensors``. No pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routerzoo.errors import UserError

ARTIFACT_SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass
class Prediction:
    """Per-prompt, per-model predictions.

    Attributes:
        quality: (n, m) predicted quality in [0, 1].
        cost: (n, m) predicted USD cost.
    """

    quality: np.ndarray
    cost: np.ndarray


def decide(quality: np.ndarray, cost: np.ndarray, cost_weight: float) -> np.ndarray:
    """Index of the chosen model per prompt: argmax of quality − λ·cost.

    Exact ties go to the cheaper predicted cost, then to the lower index, so with λ = 0 and equal
    predicted qualities (binary labels) the cheapest of the equally good models is chosen.

    Args:
        quality: (n, m) predicted quality.
        cost: (n, m) predicted USD cost.
        cost_weight: λ >= 0, in quality per USD.

    Returns:
        (n,) int model indices.
    """
    utility = quality - cost_weight * cost if cost_weight != 0 else quality
    tied = utility == utility.max(axis=1, keepdims=True)
    return np.argmin(np.where(tied, cost, np.inf), axis=1)


class Router:
    """Base class of every router.

    Args:
        models: candidate model names, the column order of every (n, m) array.
        model_costs: (m,) mean USD cost per prompt of each model, the default cost prediction.
        prices: model → {"input": $/1M tokens, "output": $/1M tokens} as recorded at training.
        encoder: sentence-transformers id or folder for routers that read embeddings, else None.
        params: the router's hyper-parameters (JSON-able).
        lineage: where it came from (dataset name and sha256, split, MLflow run id, ...).
    """

    kind: ClassVar[str] = ""
    #: whether ``predict_embeddings`` is implemented (the router reads prompt embeddings)
    uses_embeddings: ClassVar[bool] = False

    def __init__(
        self,
        models: Sequence[str],
        model_costs: Sequence[float],
        prices: dict | None = None,
        encoder: str | None = None,
        params: dict | None = None,
        lineage: dict | None = None,
    ):
        self.models = list(models)
        self.model_costs = np.asarray(model_costs, dtype=np.float64)
        self.prices = dict(prices or {})
        self.encoder = encoder
        self.params = dict(params or {})
        self.lineage = dict(lineage or {})
        self._encoder = None
        if len(self.models) != len(self.model_costs):
            raise ValueError(f"{len(self.models)} models but {len(self.model_costs)} model costs")

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays to store in ``weights.safetensors`` (override in learned routers)."""
        return {}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""

    def config(self) -> dict[str, Any]:
        return {
            "schema_version": ARTIFACT_SCHEMA_VERSION,
            "kind": self.kind,
            "models": self.models,
            "model_costs": self.model_costs.tolist(),
            "prices": self.prices,
            "encoder": self.encoder,
            "params": self.params,
            "lineage": self.lineage,
        }

    # -- inference -----------------------------------------------------------------------------
    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Prompt embeddings (n, d) from this router's encoder (loaded on first use)."""
        if self.encoder is None:
            raise TypeError(f"router {self.kind!r} has no encoder")
        if self._encoder is None:
            from routerzoo.data.embeddings import Encoder

            self._encoder = Encoder(self.encoder, show_progress=False)
        return self._encoder.encode(prompts)

    def set_encoder(self, encoder) -> None:
        """Share an already loaded :class:`~routerzoo.data.embeddings.Encoder` (must match ``self.encoder``)."""
        if encoder.model_id != self.encoder:
            raise ValueError(f"encoder {encoder.model_id!r} does not match the router's {self.encoder!r}")
        self._encoder = encoder

    def predict_embeddings(self, embeddings: np.ndarray) -> Prediction:
        """Predictions from prompt embeddings of shape (n, d), for routers with ``uses_embeddings``."""
        raise TypeError(f"router {self.kind!r} does not read embeddings")

    def predict(self, prompts: Sequence[str]) -> Prediction:
        """Predicted quality and cost, each (n, m), for n prompts."""
        return self.predict_embeddings(self.embed(list(prompts)))

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality of each candidate model, shape (n_prompts, n_models)."""
        return self.predict(prompts).quality

    def choose(
        self,
        pred: Prediction,
        cost_weight: float = 0.0,
        *,
        threshold: float | None = None,
        strong: str | None = None,
        weak: str | None = None,
    ) -> list[str]:
        """Model names chosen from predictions already made.

        With ``strong`` and ``weak``: the two-model form, ``strong`` where q̂_strong − q̂_weak ≥
        ``threshold`` (default 0). Otherwise argmax of quality − cost_weight·cost.
        """
        if strong is None and weak is None:
            return [self.models[i] for i in decide(pred.quality, pred.cost, cost_weight)]
        for name in (strong, weak):
            if name not in self.models:
                raise UserError(f"model {name!r} is not a candidate of this router; candidates: {self.models}")
        margin = pred.quality[:, self.models.index(strong)] - pred.quality[:, self.models.index(weak)]
        cut = 0.0 if threshold is None else threshold
        return [strong if m >= cut else weak for m in margin]

    def route(self, prompts: Sequence[str], cost_weight: float = 0.0) -> list[str]:
        """Chosen model name per prompt: argmax of quality − cost_weight·cost."""
        return self.choose(self.predict(prompts), cost_weight)

    def route_threshold(self, prompts: Sequence[str], threshold: float, strong: str, weak: str) -> list[str]:
        """Two-model form: ``strong`` where q̂_strong − q̂_weak ≥ threshold, else ``weak``."""
        for name in (strong, weak):  # check before predicting: a typo should not cost an encode
            if name not in self.models:
                raise UserError(f"model {name!r} is not a candidate of this router; candidates: {self.models}")
        return self.choose(self.predict(prompts), threshold=threshold, strong=strong, weak=weak)

    def _default_cost(self, n: int) -> np.ndarray:
        return np.broadcast_to(self.model_costs, (n, len(self.models))).copy()

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into directory ``path``."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v) for k, v in self.state().items()}
        if not tensors:  # safetensors needs at least one tensor; keep the file so every artifact looks alike
            tensors = {"model_costs": np.ascontiguousarray(self.model_costs)}
        save_file(tensors, str(path / WEIGHTS_FILE), metadata={"kind": self.kind})
        (path / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, default=_json_default) + "\n")
        return path

    @classmethod
    def from_config(cls, config: dict) -> Router:
        return cls(
            models=config["models"],
            model_costs=config["model_costs"],
            prices=config.get("prices"),
            encoder=config.get("encoder"),
            params=config.get("params"),
            lineage=config.get("lineage"),
        )


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_artifact(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a router artifact directory; returns (config, tensors).

    Raises:
        UserError: naming the file when the artifact is missing, unreadable or too new.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise UserError(f"{path} is not a router artifact: {CONFIG_FILE} not found (train one with `routerzoo train`)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{cfg_path}: not valid JSON ({exc})") from None
    for key in ("kind", "models", "model_costs"):
        if key not in config:
            raise UserError(f"{cfg_path}: missing field '{key}'")
    if config.get("schema_version", 0) > ARTIFACT_SCHEMA_VERSION:
        raise UserError(
            f"{cfg_path}: artifact schema version {config['schema_version']} is newer than this routerzoo "
            f"supports ({ARTIFACT_SCHEMA_VERSION}); upgrade routerzoo"
        )
    weights = path / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights)) if weights.exists() else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{weights}: cannot read weights ({exc})") from None
    return config, tensors
