"""Non-learned baselines: random (the floor), best single model (the zero router), oracle (the ceiling)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.data.text import normalise_text
from routerzoo.routers.core.base import Router
from routerzoo.routers.encoders.encoder import text_keys

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext


@dataclass
class RandomConfig:
    """Random router.

    Attributes:
        seed: seed of the per-prompt random scores.
    """

    seed: int = 0


@dataclass
class BestSingleConfig:
    """Best single model: no hyper-parameters."""


@dataclass
class OracleConfig:
    """Oracle: remembers the true outcomes of training *and* validation prompts (an upper bound)."""


class RandomRouter(Router):
    """Uniform random quality scores, deterministic per (prompt, model, seed).

    Swept over the cost weight it mixes models at random, which traces the straight line between
    single models: the floor any learned router must rise above.
    """

    kind = "random"
    Config = RandomConfig

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, None]:
        m = len(self.models)
        quality = np.empty((len(prompts), m))
        for i, prompt in enumerate(prompts):
            digest = hashlib.sha256(f"{self.config.seed}\0{prompt}".encode()).digest()
            quality[i] = np.random.default_rng(int.from_bytes(digest[:8], "big")).random(m)
        return quality, None


class BestSingleRouter(Router):
    """Every prompt gets the same prediction: each model's mean training quality and cost.

    With λ = 0 it always picks the model that was best on training data; sweeping λ walks along the
    single models (the "zero router").
    """

    kind = "best-single"
    Config = BestSingleConfig
    state_arrays = ("mean_quality",)

    def fit_arrays(self, quality: np.ndarray) -> BestSingleRouter:
        """quality: (N, m) training outcomes, NaN where missing."""
        self.mean_quality_ = np.nanmean(np.asarray(quality, dtype=np.float64), axis=0)
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(self._tensor(tensors, "mean_quality", (len(self.models),)), dtype=np.float64)

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, None]:
        return np.broadcast_to(self.mean_quality_, (len(prompts), len(self.models))).copy(), None


class OracleRouter(Router):
    """Looks the answer up: the true quality and cost of every prompt it has seen.

    An upper bound for evaluation, not a deployable router: prompts it has not seen (by normalised
    text) get the mean quality and cost.
    """

    kind = "oracle"
    Config = OracleConfig
    state_arrays = ("keys", "quality", "cost")

    def fit_arrays(self, prompts: list[str], quality: np.ndarray, cost: np.ndarray) -> OracleRouter:
        """prompts (N,); quality, cost (N, m) with NaN where missing."""
        self.keys_ = text_keys([normalise_text(p) for p in prompts])
        self.quality_ = np.asarray(quality, dtype=np.float64)
        self.cost_ = np.asarray(cost, dtype=np.float64)
        return self

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        keys = self._tensor(tensors, "keys", (None, 32))
        n, m = keys.shape[0], len(self.models)
        self.keys_ = keys
        self.quality_ = self._tensor(tensors, "quality", (n, m))
        self.cost_ = self._tensor(tensors, "cost", (n, m))

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        index = {k.tobytes(): i for i, k in enumerate(self.keys_)}
        mean_q = np.nanmean(self.quality_, axis=0)
        mean_c = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        n, m = len(prompts), len(self.models)
        quality = np.broadcast_to(mean_q, (n, m)).copy()
        cost = np.broadcast_to(mean_c, (n, m)).copy()
        for row, key in enumerate(text_keys([normalise_text(p) for p in prompts])):
            i = index.get(key.tobytes())
            if i is not None:
                quality[row] = np.where(np.isnan(self.quality_[i]), 0.0, self.quality_[i])
                cost[row] = np.where(np.isnan(self.cost_[i]), mean_c, self.cost_[i])
        return quality, cost


def fit_random(config: RandomConfig, ctx: FitContext) -> tuple[RandomRouter, dict]:
    return RandomRouter(config, **ctx.router_kwargs(encoder=False)), {}


def fit_best_single(config: BestSingleConfig, ctx: FitContext) -> tuple[BestSingleRouter, dict]:
    train = ctx.require_outcomes("best-single")
    router = BestSingleRouter(config, **ctx.router_kwargs(encoder=False)).fit_arrays(train.quality)
    best = int(np.nanargmax(router.mean_quality_))
    return router, {"best_model_train_quality": float(router.mean_quality_[best])}


def fit_oracle(config: OracleConfig, ctx: FitContext) -> tuple[OracleRouter, dict]:
    train = ctx.require_outcomes("oracle")
    parts = [train] + ([ctx.val] if ctx.val is not None and len(ctx.val) else [])
    router = OracleRouter(config, **ctx.router_kwargs(encoder=False))
    router.fit_arrays(
        [p for part in parts for p in part.prompts],
        np.concatenate([part.quality for part in parts]),
        np.concatenate([part.cost for part in parts]),
    )
    return router, {}
