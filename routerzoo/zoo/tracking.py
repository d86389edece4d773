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

    from routerzoo.extras import require

    mlflow = require("mlflow", "MLflow tracking and the model registry")
    # alembic logs every migration of a new SQLite store at INFO; users do not need that
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    resolved = resolve_tracking_uri(uri)
    # mlflow.set_tracking_uri also writes $MLFLOW_TRACKING_URI: left so, one call naming another store
    # (`--tracking-uri X`) would become every later call's default in this process (the Python API, a
    # server, a test session). The environment stays the user's; the URI is resolved on every call.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(resolved)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return mlflow


def registry_uri(tracking_uri: str) -> str:
    """``$MLFLOW_REGISTRY_URI`` where a team keeps its registry apart, else the tracking store."""
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri


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


def metric_key(name: str) -> str:
    """``name`` with every character MLflow refuses in a metric name (it takes letters, digits, ``_ - . /``
    and spaces) replaced by ``_``: keys are built from user-given names, such as the candidate
    ``mlp:features={prompt_length: true}`` of ``--router auto``, and one bad key fails the whole log call."""
    import re

    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def log_metrics(metrics: dict, prefix: str = "") -> None:
    """Log the finite numeric entries of ``metrics`` to the active run."""
    import math

    import mlflow

    clean = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            clean[metric_key(f"{prefix}{k}")] = float(v)
    if clean:
        mlflow.log_metrics(clean)


def log_default_plot(reports: dict, title: str | None = None) -> None:
    """Log ``reports/cost_quality.png`` of the eval (else val) report, so every run shows its curve."""
    name = next((n for n in ("eval", "val") if "curve" in reports.get(n, {})), None)
    if name is None:
        return
    import tempfile

    import mlflow

    from routerzoo.errors import UserError
    from routerzoo.evaluation.plot import plot_report

    with tempfile.TemporaryDirectory(prefix="routerzoo-plot-") as tmp:
        try:
            path = plot_report(reports[name], Path(tmp) / "cost_quality.png", title=title or f"{name} split")
        except UserError:  # matplotlib (the plot extra) not installed: the numbers are logged anyway
            return
        mlflow.log_artifact(str(path), "reports")


class TrainingRun:
    """The MLflow side of one training run, as a context manager.

    The same for every role (routers, deferral scorers, policies). Opens a run (unless tracking is
    off) with the kind, role, dataset and version as tags, logs parameters, the resolved config and
    the dataset manifest on entry; :meth:`log_result` logs fit metrics, evaluation reports, the
    optional plot, the artifact and the pyfunc model, and registers it. With tracking off every
    method is a no-op, so the training code has no branches for it.

    Args:
        tracking: a :class:`routerzoo.training.train.TrackingConfig`.
        kind: the registered kind.
        dataset: the training :class:`~routerzoo.data.dataset.RoutingDataset`.
        resolved: the resolved command-line / YAML config (logged as ``config.json``).
        features: the feature config (logged as params), or None for kinds without one.
        seed: global seed.
    """

    def __init__(self, tracking, kind: str, dataset, resolved: dict, features, seed: int, role: str | None = None):
        from routerzoo.routers.registry import get_kind

        self.tracking = tracking
        self.kind = kind
        # ``role`` for what is trained but is no registered kind (``auto``: a search whose result is a router)
        self.role = role or get_kind(kind).role
        self.dataset = dataset
        self.resolved = resolved
        self.features = features
        self.seed = seed
        self.run_id: str | None = None
        self._ctx = None

    def __enter__(self) -> TrainingRun:
        if not self.tracking.enabled:
            return self
        from dataclasses import asdict

        from routerzoo import __version__

        t = self.tracking
        tags = {"routerzoo.router": self.kind, "routerzoo.role": self.role, "routerzoo.dataset": self.dataset.name,
                "routerzoo.dataset_sha256": str(self.dataset.manifest.get("sha256")), "routerzoo.version": __version__}
        self._ctx = run(t.experiment, run_name=t.run_name or self.kind, tags=tags, uri=t.tracking_uri)
        active = self._ctx.__enter__()
        self.run_id = active.info.run_id
        import mlflow

        params = {"router": self.kind, "config": self.resolved.get("router", {}), "seed": self.seed}
        if self.features is not None:
            params["features"] = asdict(self.features)
        mlflow.log_params(flatten(params))
        mlflow.log_text(json.dumps(self.resolved, indent=2, default=str), "config.json")
        mlflow.log_dict(self.dataset.manifest, "dataset/dataset.json")
        return self

    def __exit__(self, *exc) -> bool:
        if self._ctx is not None:
            return bool(self._ctx.__exit__(*exc))
        return False

    def lineage(self) -> dict:
        """What the artifact records about this run."""
        if self.run_id is None:
            return {}
        return {"mlflow_run_id": self.run_id, "mlflow_experiment": self.tracking.experiment}

    def lightning_logger(self):
        """An MLFlowLogger writing into this run (None when tracking is off). Imports Lightning."""
        if self.run_id is None:
            return None
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=self.tracking.experiment,
                            tracking_uri=resolve_tracking_uri(self.tracking.tracking_uri), run_id=self.run_id)

    def log_result(self, fit_metrics: dict, reports: dict, router_dir, plot=None, plot_title: str | None = None) -> dict:
        """Log metrics, reports, plot, artifact and pyfunc model; register. Returns {"model_uri", "version"}.

        ``router_dir``: the artifact directory of any role (logged under its role's folder).
        """
        if plot is not None and "eval" in reports:
            from routerzoo.evaluation.plot import plot_report

            plot_report(reports["eval"], plot, title=plot_title)
        if self.run_id is None:
            return {}
        import mlflow

        from routerzoo.evaluation.report import summary_metrics

        log_metrics(fit_metrics)
        for name, report in reports.items():
            log_metrics(summary_metrics(report), prefix=f"{name}_")
            mlflow.log_dict(report, f"reports/{name}.json")
        if plot is not None and "eval" in reports:
            mlflow.log_artifact(str(plot), "reports")
        else:
            log_default_plot(reports, plot_title)
        from routerzoo.routers.core.artifact import read_document
        from routerzoo.routers.core.loader import ARTIFACT_DIRS
        from routerzoo.zoo.lineage import lineage_tags, metric_tags

        doc = read_document(router_dir)
        mlflow.log_artifacts(str(router_dir), ARTIFACT_DIRS[doc["role"]])
        lineage = doc.get("lineage", {})
        mlflow.log_dict(lineage, "lineage.json")
        headline = {f"{name}_{k}": v for name, report in reports.items() for k, v in summary_metrics(report).items()}
        tags = lineage_tags(lineage) | metric_tags(headline)
        mlflow.set_tags(tags)
        if not self.tracking.log_model:
            return {}
        from routerzoo.zoo.pyfunc import log_model, set_alias

        t = self.tracking
        info = log_model(router_dir, registered_name=t.register)
        version = info.registered_model_version
        if version is not None:  # the version shows what it was trained on without opening the run
            client = mlflow.MlflowClient()
            for key, value in tags.items():
                client.set_model_version_tag(t.register, str(version), key, value)
        if t.alias and version is not None:
            set_alias(t.register, t.alias, version)
            mlflow.set_tag("routerzoo.registered", f"{t.register}@{t.alias} (v{version})")
        return {"model_uri": info.model_uri, "version": None if version is None else int(version)}  # a str over HTTP
