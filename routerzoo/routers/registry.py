"""The explicit registry of router kinds, and the one load path every consumer uses.

Adding a router: its own file, one line here, a training entry in
:mod:`routerzoo.training.registry`, a config under ``configs/routers/``, and the contract test
covers it.
"""

from __future__ import annotations

import os

from routerzoo.errors import UserError
from routerzoo.routers.base import Router, read_artifact
from routerzoo.routers.baselines import BestSingleRouter, OracleRouter, RandomRouter
from routerzoo.routers.knn import KNNRouter
from routerzoo.routers.mlp import MLPRouter

ROUTERS: dict[str, type[Router]] = {
    cls.kind: cls for cls in (KNNRouter, MLPRouter, RandomRouter, BestSingleRouter, OracleRouter)
}


def get_router_class(kind: str) -> type[Router]:
    try:
        return ROUTERS[kind]
    except KeyError:
        raise UserError(f"unknown router kind {kind!r}; registered: {sorted(ROUTERS)}") from None


def load_router(path: str | os.PathLike) -> Router:
    """Load a router artifact directory (``config.json`` + ``weights.safetensors``)."""
    config, tensors = read_artifact(path)
    router = get_router_class(config["kind"]).from_config(config)
    try:
        router.load_state(tensors)
    except KeyError as exc:
        raise UserError(f"{path}: weights lack tensor {exc} needed by a {config['kind']!r} router") from None
    return router
