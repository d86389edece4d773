"""Every role as an MLflow pyfunc model, and the model registry (versions, aliases).

A logged model is the artifact directory (``config.json`` + ``weights.safetensors``, under
``artifacts/router``, ``artifacts/scorer`` or ``artifacts/policy`` by role) plus
:mod:`routerzoo.zoo.pyfunc_model` as a model-from-code; nothing is pickled. Loaded with
``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` it answers a DataFrame, one row per prompt:

* a **router**: a ``prompt`` column (or a list of prompts) and the optional params ``cost_weight``
  (λ, quality per USD) or ``threshold`` + ``strong`` + ``weak`` (two-model form); returns the chosen
  ``model`` and the predicted quality and cost of every candidate;
* a **deferral scorer**: ``prompt`` and ``response`` columns (and ``token_logprobs``, lists of
  floats, for scorers that read them); returns each answer's acceptance ``score``;
* a **sequential policy** (a calibrated cascade, the MDP router): ``prompt`` and one column of
  answers per model it may call, named after the model (optionally ``MODEL:token_logprobs`` and
  ``MODEL:cost``): the policy is replayed on those answers and returns the accepted ``model``,
  its ``answer``, the ``calls`` made (JSON) and their summed ``cost``.
"""

from __future__ import annotations

import json
import logging
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


class TableClient:
    """A :class:`~routerzoo.routers.policies.clients.ModelClient` answering from a DataFrame's columns."""

    def __init__(self, frame: pd.DataFrame, models: list[str]):
        missing = [m for m in models if m not in frame.columns]
        if missing:
            raise UserError(f"input needs one column of answers per model the policy may call; missing {missing} "
                            f"(columns: {list(frame.columns)})")
        self.frame, self.models = frame.reset_index(drop=True), list(models)
        self._row = {p: i for i, p in enumerate(self.frame["prompt"].tolist())}

    def complete(self, model: str, prompts) -> list:
        from routerzoo.routers.policies.clients import Completion

        f, out = self.frame, []
        for prompt in prompts:
            i = self._row[prompt]
            text = f.at[i, model]
            if text is None or (isinstance(text, float) and np.isnan(text)):
                out.append(None)
                continue
            lps = f.at[i, f"{model}:token_logprobs"] if f"{model}:token_logprobs" in f.columns else None
            cost = f.at[i, f"{model}:cost"] if f"{model}:cost" in f.columns else 0.0
            out.append(Completion(str(text), None if lps is None else np.asarray(lps, dtype=np.float64), float(cost)))
        return out


def _frame(model_input) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        frame = model_input
    elif isinstance(model_input, dict):
        frame = pd.DataFrame(model_input)
    else:
        frame = pd.DataFrame(list(model_input))
    if "prompt" not in frame.columns:
        raise UserError(f"input needs a 'prompt' column; got columns {list(frame.columns)}")
    return frame


class RouterPyfunc(PythonModel):
    """pyfunc wrapper of any role: ``load_context`` loads the artifact once, ``predict`` answers a batch."""

    def load_context(self, context) -> None:
        from routerzoo.routers.core.loader import ARTIFACT_DIRS, load

        key = next((k for k in dict.fromkeys(ARTIFACT_DIRS.values()) if k in context.artifacts), None)
        if key is None:
            raise UserError(f"this pyfunc model logged no routerzoo artifact (artifacts: {sorted(context.artifacts)})")
        self.router = load(context.artifacts[key])  # the one loader, as everywhere

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from routerzoo.routers.core.base import Router
        from routerzoo.routers.deferral.base import DeferralScorer

        if isinstance(self.router, Router):
            return self._route(model_input, params or {})
        if isinstance(self.router, DeferralScorer):
            return self._score(model_input)
        return self._run(model_input)

    def _route(self, model_input, params: dict) -> pd.DataFrame:
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

    def _score(self, model_input) -> pd.DataFrame:
        frame = _frame(model_input)
        if "response" not in frame.columns:
            raise UserError(f"a deferral scorer scores answers: input needs 'prompt' and 'response' columns; got {list(frame.columns)}")
        lps = None
        if "token_logprobs" in frame.columns:
            lps = [None if v is None else np.asarray(v, dtype=np.float64) for v in frame["token_logprobs"].tolist()]
        scores = self.router.predict(_prompts(frame), frame["response"].tolist(), lps)
        return pd.DataFrame({"score": np.asarray(scores, dtype=np.float64)})

    def _run(self, model_input) -> pd.DataFrame:
        frame = _frame(model_input)
        prompts = _prompts(frame)
        if len(set(prompts)) != len(prompts):
            raise UserError("a policy replays answers by prompt: give each prompt once")
        traces = self.router.run(prompts, TableClient(frame, self.router.models))
        rows = []
        for t in traces:
            accepted = t.calls[t.answer] if t.calls and t.answer >= 0 else None
            rows.append({"model": accepted.model if accepted else None,
                         "answer": t.completion.text if t.completion is not None else None,
                         "calls": json.dumps([{"model": c.model, "score": c.score} for c in t.calls]),
                         "cost": t.cost})
        return pd.DataFrame(rows, columns=["model", "answer", "calls", "cost"])


def log_model(artifact_dir: str | Path, name: str = "model", registered_name: str | None = None):
    """Log ``artifact_dir`` (any role) as a pyfunc model in the active run; optionally register it.

    Returns the ``ModelInfo`` (its ``model_uri`` loads the model; ``registered_model_version`` is set
    when registered).
    """
    import shutil
    import tempfile

    import mlflow

    from routerzoo.routers.core.artifact import read_document
    from routerzoo.routers.core.loader import ARTIFACT_DIRS

    role = read_document(artifact_dir)["role"]
    if role == "router":
        return log_router_model(artifact_dir, name, registered_name)
    key = ARTIFACT_DIRS[role]
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="routerzoo-log-") as tmp:
        staged = Path(tmp) / key  # the same folder name whatever the local directory was called
        shutil.copytree(artifact_dir, staged)
        # scorers and policies take several columns whose names depend on the artifact: no fixed signature
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        warnings.filterwarnings("ignore", message=".*signature.*")
        # MLflow says so through its logger too ("Failed to infer model signature"), on every training
        quiet = _DropMessages("signature")
        logging.getLogger("mlflow.pyfunc").addFilter(quiet)
        try:
            return mlflow.pyfunc.log_model(
                name=name, python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={key: str(staged)}, registered_model_name=registered_name,
                pip_requirements=[f"routerzoo=={_version()}"],
            )
        finally:
            logging.getLogger("mlflow.pyfunc").removeFilter(quiet)


class _DropMessages(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


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
