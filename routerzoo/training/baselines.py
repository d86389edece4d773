"""Fit the non-learned baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from routerzoo.routers.baselines import BestSingleRouter, OracleRouter, RandomRouter
from routerzoo.training.context import FitContext


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


def fit_random(config: RandomConfig, ctx: FitContext) -> tuple[RandomRouter, dict]:
    return RandomRouter(**ctx.router_kwargs(asdict(config), encoder=False)), {}


def fit_best_single(config: BestSingleConfig, ctx: FitContext) -> tuple[BestSingleRouter, dict]:
    router = BestSingleRouter(**ctx.router_kwargs({}, encoder=False)).fit_arrays(ctx.train.quality)
    best = int(np.nanargmax(router.mean_quality_))
    return router, {"best_model_train_quality": float(router.mean_quality_[best])}


def fit_oracle(config: OracleConfig, ctx: FitContext) -> tuple[OracleRouter, dict]:
    router = OracleRouter(**ctx.router_kwargs({}, encoder=False))
    router.fit_arrays(
        ctx.train.prompts + ctx.val.prompts,
        np.concatenate([ctx.train.quality, ctx.val.quality]),
        np.concatenate([ctx.train.cost, ctx.val.cost]),
    )
    return router, {}
