"""MLflow tracking setup.

Default store: ``sqlite:///<working dir>/mlflow.db`` with artifacts in ``<working dir>/mlartifacts``;
``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``) points elsewhere, e.g. a team's tracking server.
Telemetry is off unless the user turned it on, so no process makes network calls nobody asked for.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path


def _quiet_mlflow() -> None:
    # must happen before mlflow is imported: it reads these at import time
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # per-file download bars when loading a two-file router are noise
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the working directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _local_artifact_root(uri: str) -> str | None:
    """Artifacts beside a local SQLite store, so runs and files stay together wherever the cwd is."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def setup(uri: str | None = None):
    """Import mlflow quietly and point it at the tracking store; returns the mlflow module."""
    _quiet_mlflow()
    import logging

    import mlflow

    # alembic logs every migration of a new SQLite store at INFO; users do not need that
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(resolve_tracking_uri(uri))
    return mlflow


def experiment_id(name: str, uri: str | None = None) -> str:
    """Id of experiment ``name``, created (with a local artifact root when the store is local) if new."""
    mlflow = setup(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = _local_artifact_root(resolve_tracking_uri(uri))
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


@contextmanager
def run(experiment: str, run_name: str | None = None, tags: dict | None = None, uri: str | None = None):
    """Start an MLflow run (as the active run) and yield it."""
    mlflow = setup(uri)
    exp_id = experiment_id(experiment, uri)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags) as active:
        yield active


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict → ``{"a.b": value}`` with values as short strings, for ``log_params``."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            text = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
            out[key] = text[:500]
    return out


def log_metrics(metrics: dict, prefix: str = "") -> None:
    """Log the finite numeric entries of ``metrics`` to the active run."""
    import math

    import mlflow

    clean = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            clean[f"{prefix}{k}"] = float(v)
    if clean:
        mlflow.log_metrics(clean)
