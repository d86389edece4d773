"""The router contract.

A router is a **quality/cost scorer** plus a **policy**. The scorer answers one question in batch:
for n prompts and its m candidate models, the predicted quality of each model's answer and its
predicted USD cost (:class:`~routerzoo.routers.core.prediction.Prediction`, both (n, m)). A policy turns
that into decisions (:mod:`routerzoo.routers.policies`): λ-argmax of quality − λ·cost, the
two-model threshold, or a budget- / capacity-constrained assignment of the whole batch. The artifact
names the default policy; every call may pass another.

Subclasses declare ``kind``, a typed ``Config`` dataclass (their hyper-parameters, stored in the
artifact as they are) and implement ``_predict_embeddings`` (routers that read prompt embeddings,
``uses_embeddings = True``) or ``_predict_prompts``, plus ``state`` / ``load_state`` for learned
arrays. Costs go through the router's :class:`~routerzoo.routers.core.cost.CostModel`, so new prices
change decisions without retraining.

As in scikit-learn, the constructor only stores its arguments; fitting happens in the kind's fit
function (see :mod:`routerzoo.routers.registry`), learned state ends in ``_``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routerzoo.errors import UserError
from routerzoo.routers.core.cost import CostModel
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.encoders.lazy import LazyEncoding
from routerzoo.routers.policies.argmax import ArgmaxPolicy
from routerzoo.routers.policies.base import BatchPolicy
from routerzoo.routers.policies.threshold import ThresholdConfig, ThresholdPolicy


class NotFittedError(UserError):
    """A router used before it was fitted or loaded."""


def check_prompts(prompts) -> list[str]:
    """``prompts`` as a list of strings, or a UserError naming the first bad entry."""
    if isinstance(prompts, str):
        raise UserError("prompts must be a list of strings, got a single string (wrap it in a list)")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise UserError(f"prompt {i} is not a string: {type(p).__name__}")
    return prompts


class Router(LazyEncoding):
    """Base class of every router.

    Args:
        config: the kind's typed config (an instance of ``Config``); None for its defaults.
        models: candidate model names, the column order of every (n, m) array.
        cost_model: per-model cost statistics and prices; None when nothing is known about cost.
        encoder: sentence-transformers id or folder for routers that read embeddings, else None.
        policy: the default decision policy (λ-argmax with λ = 0 when None).
        quality_range: (low, high) of the quality scale the router predicts on.
        lineage: where it came from (dataset name and sha256, split, MLflow run id, ...).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]
    #: whether the router reads prompt embeddings (``_predict_embeddings``)
    uses_embeddings: ClassVar[bool] = False
    #: the learned arrays of a router that saves them as they are: each ``NAME`` is stored from
    #: the attribute ``NAME_``, which must exist before predicting (the default :meth:`state` and
    #: :meth:`fitted_attributes`); ``load_state`` stays the kind's, as it checks the shapes
    state_arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config=None,
        *,
        models: Sequence[str],
        cost_model: CostModel | None = None,
        encoder: str | None = None,
        policy: BatchPolicy | None = None,
        quality_range: tuple[float, float] = (0.0, 1.0),
        lineage: dict | None = None,
    ):
        self.config = config if config is not None else self.Config()
        self.models = list(models)
        self.cost_model = cost_model if cost_model is not None else CostModel.fit(self.models, None)
        self.encoder = encoder
        self.policy = policy if policy is not None else ArgmaxPolicy()
        self.quality_range = (float(quality_range[0]), float(quality_range[1]))
        self.lineage = dict(lineage or {})
        self._encoder = None

    # -- learned state ---------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays to store in ``weights.safetensors``: :attr:`state_arrays` (override where
        the state is not a few plain arrays)."""
        return {name: getattr(self, f"{name}_") for name in self.state_arrays}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned; check names and shapes (see :meth:`_tensor`)."""

    def _tensor(self, tensors: dict[str, np.ndarray], name: str, shape: tuple) -> np.ndarray:
        """``tensors[name]`` checked against ``shape`` (None = any size on that axis)."""
        if name not in tensors:
            raise UserError(f"weights lack tensor {name!r} needed by a {self.kind!r} router")
        arr = tensors[name]
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise UserError(f"weights: tensor {name!r} has shape {tuple(arr.shape)}, expected {want} for {len(self.models)} models")
        return arr

    @staticmethod
    def _module_state(module, prefix: str = "net.") -> dict[str, np.ndarray]:
        """A torch module's tensors as numpy arrays named ``prefix + name`` (for :meth:`state`)."""
        return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in module.state_dict().items()}

    def _load_module(self, module, tensors: dict[str, np.ndarray], what: str, prefix: str = "net.") -> None:
        """Load ``module``'s parameters from ``tensors[prefix + name]``: every tensor's shape is checked
        against the module built from the config, and tensors the module does not have are refused
        (``what`` names the network in that error)."""
        import torch

        expected = module.state_dict()
        for name, value in expected.items():
            self._tensor(tensors, f"{prefix}{name}", tuple(value.shape))
        extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix):] not in expected)
        if extra:
            raise UserError(f"weights: unexpected tensor(s) {extra[:3]} for {what}")
        module.load_state_dict({k: torch.from_numpy(np.array(tensors[f"{prefix}{k}"])) for k in expected})

    def _check_fitted(self) -> None:
        missing = [name for name in self.fitted_attributes() if not hasattr(self, name)]
        if missing:
            raise NotFittedError(f"this {self.kind!r} router is not fitted (no {missing[0]}); train it or load an artifact")

    def fitted_attributes(self) -> list[str]:
        """Names of the learned attributes that must exist before predicting (default: those of
        :attr:`state_arrays`)."""
        return [f"{name}_" for name in self.state_arrays]

    # -- features --------------------------------------------------------------------------------
    def _encoder_id(self) -> str:
        """The encoder :meth:`embed` loads on first use (memory cache only)."""
        if self.encoder is None:
            raise TypeError(f"router {self.kind!r} has no encoder")
        return self.encoder

    @property
    def loaded_encoder(self):
        """The :class:`~routerzoo.routers.encoders.encoder.Encoder` in use, or None before the first encode."""
        return self._encoder

    def set_encoder(self, encoder) -> None:
        """Share an already loaded :class:`~routerzoo.routers.encoders.encoder.Encoder` (must match ``self.encoder``)."""
        if encoder.model_id != self.encoder:
            raise ValueError(f"encoder {encoder.model_id!r} does not match the router's {self.encoder!r}")
        self._encoder = encoder

    # -- prediction ------------------------------------------------------------------------------
    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(quality (n, m), cost at training prices (n, m) or None) from embeddings (n, d)."""
        raise TypeError(f"router {self.kind!r} does not read embeddings")

    def _predict_inputs(self, prompts: list[str], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(quality, cost) of prompts whose embeddings (n, d) are already computed. The embedding is
        all most routers read; one with inputs beyond it (an MLP with prompt-length features)
        overrides this to read the texts too."""
        return self._predict_embeddings(embeddings)

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(quality (n, m), cost at training prices (n, m) or None) from prompt texts."""
        return self._predict_inputs(prompts, self.embed(prompts))

    def _finish(self, quality: np.ndarray, cost: np.ndarray | None, n: int) -> Prediction:
        quality = np.asarray(quality, dtype=np.float64).reshape(n, len(self.models))
        return Prediction(quality, self.cost_model.predict(cost, n))

    def predict(self, prompts: Sequence[str]) -> Prediction:
        """Predicted quality and cost, each of shape (n, m), for n prompts."""
        prompts = check_prompts(prompts)
        self._check_fitted()
        if not prompts:
            m = len(self.models)
            return Prediction(np.zeros((0, m)), np.zeros((0, m)))
        quality, cost = self._predict_prompts(prompts)
        return self._finish(quality, cost, len(prompts))

    def predict_embeddings(self, embeddings: np.ndarray, prompts: Sequence[str] | None = None) -> Prediction:
        """Predictions from precomputed prompt embeddings of shape (n, d) (``uses_embeddings`` routers).

        ``prompts`` (the n texts) lets a router with inputs beyond the embedding (prompt-length
        features) read them; without it such a router raises a ValueError saying so.
        """
        self._check_fitted()
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if prompts is None:
            quality, cost = self._predict_embeddings(embeddings)
        else:
            prompts = list(prompts)
            if len(prompts) != embeddings.shape[0]:
                raise ValueError(f"{len(prompts)} prompts for {embeddings.shape[0]} embeddings")
            quality, cost = self._predict_inputs(prompts, embeddings)
        return self._finish(quality, cost, embeddings.shape[0])

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality of each candidate model, shape (n_prompts, n_models)."""
        return self.predict(prompts).quality

    # -- decisions -------------------------------------------------------------------------------
    def make_policy(self, cost_weight: float | None = None, *, threshold: float | None = None,
                    strong: str | None = None, weak: str | None = None) -> BatchPolicy:
        """The default policy, or the one these options describe (λ-argmax or two-model threshold)."""
        if strong is not None or weak is not None:
            policy = ThresholdPolicy(ThresholdConfig(strong=strong or "", weak=weak or "", threshold=0.0 if threshold is None else float(threshold)))
            policy.check_models(self.models)
            return policy
        if cost_weight is not None:
            return ArgmaxPolicy(ArgmaxPolicy.Config(cost_weight=float(cost_weight)))
        return self.policy

    def decide(self, pred: Prediction, policy: BatchPolicy | None = None) -> np.ndarray:
        """(n,) model indices chosen by ``policy`` (default: the router's) from predictions already made."""
        return (policy or self.policy).decide(pred, self.models)

    def choose(self, pred: Prediction, cost_weight: float | None = None, *, threshold: float | None = None,
               strong: str | None = None, weak: str | None = None) -> list[str]:
        """Model names chosen from predictions already made (see :meth:`make_policy`)."""
        policy = self.make_policy(cost_weight, threshold=threshold, strong=strong, weak=weak)
        return [self.models[i] for i in self.decide(pred, policy)]

    def route(self, prompts: Sequence[str], cost_weight: float | None = None, *, policy: BatchPolicy | None = None) -> list[str]:
        """Chosen model name per prompt: the default policy, λ-argmax at ``cost_weight``, or ``policy``."""
        policy = policy or self.make_policy(cost_weight)
        return [self.models[i] for i in self.decide(self.predict(prompts), policy)]

    def route_threshold(self, prompts: Sequence[str], threshold: float, strong: str, weak: str) -> list[str]:
        """Two-model form: ``strong`` where q̂_strong − q̂_weak ≥ threshold, else ``weak``."""
        policy = self.make_policy(threshold=threshold, strong=strong, weak=weak)  # checks names before encoding
        return self.route(prompts, policy=policy)

    def win_probability(self, pred: Prediction, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P(model a's answer is preferred to model b's) per row, Bradley-Terry on predicted quality.

        Args:
            pred: predictions of shape (n, m) for the n comparisons' prompts.
            a, b: (n,) model indices.

        Returns:
            (n,) probabilities: sigmoid(logit q_a − logit q_b), with qualities rescaled to [0, 1]
            and clipped away from 0 and 1.
        """
        lo, hi = self.quality_range
        q = np.clip((pred.quality - lo) / max(hi - lo, 1e-12), 1e-4, 1 - 1e-4)
        logit = np.log(q) - np.log1p(-q)
        rows = np.arange(len(a))
        return 1.0 / (1.0 + np.exp(-(logit[rows, a] - logit[rows, b])))

    # -- prices ----------------------------------------------------------------------------------
    def with_prices(self, prices: dict, where: str = "prices") -> Router:
        """A copy of this router deciding at new prices (model → {"input", "output"} $ per 1M tokens)."""
        other = copy.copy(self)
        other.cost_model = self.cost_model.with_prices(prices, where)
        return other

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the artifact (``config.json`` + ``weights.safetensors``) to directory ``path``, atomically.

        An existing non-empty ``path`` is refused unless ``overwrite``.
        """
        from routerzoo.routers.core.artifact import write_artifact

        self._check_fitted()
        return write_artifact(self, path, overwrite=overwrite)

    def describe(self) -> dict[str, Any]:
        """The artifact's ``config.json`` content (without the weights' hash)."""
        from routerzoo.routers.core.artifact import artifact_config

        return artifact_config(self)
