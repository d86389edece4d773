"""Routers as MLflow pyfunc models, and the model registry (versions, aliases).

A logged router is the artifact directory (``config.json`` + ``weights.safetensors``) plus
:mod:`routerzoo.zoo.pyfunc_model` as a model-from-code; nothing is pickled. Loaded with
``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` it answers a DataFrame with a ``prompt``
column (or a list of prompts) and the optional params ``cost_weight`` (λ, quality per USD) or
``threshold`` + ``strong`` + ``weak`` (two-model form), with one row per prompt: the chosen
``model`` and the predicted quality and cost of every candidate.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.errors import UserError

try:  # the class must subclass PythonModel when mlflow is present; importing it is cheap enough here
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object

ROUTER_ARTIFACT = "router"


def _prompts(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if "prompt" in model_input.columns:
            column = model_input["prompt"]
        elif model_input.shape[1] == 1:
            column = model_input.iloc[:, 0]
        else:
            raise UserError(f"input needs a 'prompt' column; got columns {list(model_input.columns)}")
        values = column.tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, dict) and "prompt" in model_input:
        v = model_input["prompt"]
        values = [v] if isinstance(v, str) else list(v)
    else:
        values = list(model_input)
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise UserError(f"prompt {bad[0]} is not a string: {values[bad[0]]!r}")
    return values


class RouterPyfunc(PythonModel):
    """pyfunc wrapper: ``load_context`` loads the router once, ``predict`` routes a batch."""

    def load_context(self, context) -> None:
        from routerzoo.routers import load_router

        self.router = load_router(context.artifacts[ROUTER_ARTIFACT])  # the one loader, as everywhere

    # pd.DataFrame: MLflow then validates against the logged signature (a prompt column + params)
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        router = self.router
        pred = router.predict(_prompts(model_input))  # one prediction serves both decision forms
        if params.get("strong") and params.get("weak"):
            chosen = router.choose(pred, threshold=float(params.get("threshold", 0.0)), strong=params["strong"], weak=params["weak"])
        else:
            # no cost_weight given: the artifact's default policy (calibrated λ when there is one)
            cost_weight = params.get("cost_weight")
            chosen = router.choose(pred, None if cost_weight is None else float(cost_weight))
        return pd.DataFrame({
            "model": chosen,
            "quality": [json.dumps(dict(zip(router.models, np.round(row, 6).tolist(), strict=True))) for row in pred.quality],
            "cost": [json.dumps(dict(zip(router.models, row.tolist(), strict=True))) for row in pred.cost],
        })


def log_router_model(router_dir: str | Path, name: str = "model", registered_name: str | None = None):
    """Log ``router_dir`` as a pyfunc model in the active run; optionally register it.

    Returns the ``ModelInfo`` (its ``model_uri`` loads the model; ``registered_model_version`` is set
    when registered).
    """
    import mlflow
    from mlflow.models import infer_signature

    example = pd.DataFrame({"prompt": ["What is the capital of France?"]})
    output = pd.DataFrame({"model": ["m"], "quality": ["{}"], "cost": ["{}"]})
    from mlflow.types.schema import ParamSchema, ParamSpec

    signature = infer_signature(example, output)
    # cost_weight defaults to None: the artifact's own policy decides when a caller sets nothing
    signature.params = ParamSchema([
        ParamSpec("cost_weight", "double", None), ParamSpec("threshold", "double", 0.0),
        ParamSpec("strong", "string", ""), ParamSpec("weak", "string", ""),
    ])
    import shutil
    import tempfile

    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="routerzoo-log-") as tmp:
        # MLflow names the logged folder after the source folder: stage it as "router" so every
        # model keeps its router at artifacts/router/ whatever the local directory was called
        staged = Path(tmp) / ROUTER_ARTIFACT
        shutil.copytree(router_dir, staged)
        # an input example would make MLflow load the encoder and run predict() at log time
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={ROUTER_ARTIFACT: str(staged)},
            signature=signature,
            registered_model_name=registered_name,
            pip_requirements=[f"routerzoo=={_version()}"],
        )


def set_alias(name: str, alias: str, version: int | str) -> None:
    """Point registry alias ``name@alias`` at ``version`` (e.g. "champion", "challenger")."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def load_registered(uri: str):
    """Load ``models:/NAME@ALIAS`` (or any model URI) as a pyfunc."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"cannot load {uri}: {exc.message}") from None


def _version() -> str:
    from routerzoo import __version__

    return __version__


def register(model_uri: str, name: str, alias: str | None = None, tags: dict | None = None) -> int:
    """Register a logged model as a new version of ``name``; point ``alias`` at it. Returns the version."""
    import mlflow

    version = mlflow.register_model(model_uri, name, tags=tags)
    if alias:
        set_alias(name, alias, version.version)
    return int(version.version)
