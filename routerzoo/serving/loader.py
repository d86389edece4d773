"""Load a router for serving from a registry URI, a run, or a local artifact directory.

``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` are resolved through the MLflow registry; the
router artifact logged inside the model is downloaded and loaded with the same
:func:`routerzoo.routers.load_router` as everywhere else, so a server gets a plain
:class:`~routerzoo.routers.Router` (batch ``predict`` / ``route``) without the pyfunc layer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from routerzoo.errors import UserError
from routerzoo.routers import Router, load_router
from routerzoo.zoo.pyfunc import ROUTER_ARTIFACT


def load_serving_router(uri: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Router:
    """A router from ``models:/...``, ``runs:/...`` or a local directory.

    Args:
        uri: registry or run URI of a model logged by routerzoo, or an artifact directory.
        cache_dir: where downloaded artifacts go (default: a new temporary directory).
    """
    text = str(uri)
    if not (text.startswith("models:/") or text.startswith("runs:/")):
        return load_router(text)
    from routerzoo.zoo.tracking import setup

    mlflow = setup()
    dst = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="routerzoo-serve-"))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text.rstrip("/"), dst_path=str(dst))
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"cannot resolve {text}: {exc.message}") from None
    root = Path(local)
    # pyfunc models keep the router under artifacts/<name>/ (name = the router directory's name)
    candidates = [p.parent for p in root.rglob("config.json") if (p.parent / "weights.safetensors").exists()]
    if not candidates:
        raise UserError(f"{text} holds no routerzoo router ({ROUTER_ARTIFACT} artifact with config.json + weights.safetensors)")
    return load_router(candidates[0])
