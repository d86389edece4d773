"""The train entry point: dataset → features → fit → artifact, logged to MLflow."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routerzoo.data.dataset import load_dataset
from routerzoo.errors import ConfigError, UserError
from routerzoo.training.context import FeatureConfig, FitContext
from routerzoo.training.registry import get_trainer


@dataclass
class TrackingConfig:
    """Where runs are logged.

    Attributes:
        enabled: log to MLflow at all.
        tracking_uri: MLflow tracking URI; None for ``$MLFLOW_TRACKING_URI`` or ``sqlite:///./mlflow.db``.
        experiment: MLflow experiment name.
        run_name: MLflow run name (defaults to the router kind).
        log_model: also log the router as an MLflow pyfunc model (model-from-code, no pickle).
        register: register that model under this name in the MLflow model registry.
        alias: point ``register@alias`` (e.g. "challenger") at the new version.
    """

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "routerzoo"
    run_name: str | None = None
    log_model: bool = True
    register: str | None = None
    alias: str | None = None

    def __post_init__(self):
        if self.alias and not self.register:
            raise ConfigError("--tracking.alias needs --tracking.register NAME")


@dataclass
class TrainResult:
    router_dir: Path
    run_id: str | None
    fit_metrics: dict
    reports: dict = field(default_factory=dict)
    model_uri: str | None = None
    registered_version: int | None = None


def encode_all(features: FeatureConfig, *prompt_lists: list[str], progress: bool = True) -> tuple[object, list[np.ndarray]]:
    """Encode several prompt lists with one encoder in one pass; returns (encoder, arrays)."""
    from routerzoo.data.embeddings import Encoder

    encoder = Encoder(features.encoder, batch_size=features.batch_size, device=features.device,
                      cache_dir=features.cache_dir, show_progress=progress)
    flat = [p for prompts in prompt_lists for p in prompts]
    emb = encoder.encode(flat)
    out, start = [], 0
    for prompts in prompt_lists:
        out.append(emb[start:start + len(prompts)])
        start += len(prompts)
    return encoder, out


def train_router(
    kind: str,
    model_config,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    eval_data: str | os.PathLike | None = None,
    eval_split: str = "test",
    features: FeatureConfig | None = None,
    tracking: TrackingConfig | None = None,
    seed: int = 0,
    resolved_config: dict | None = None,
    progress: bool | None = None,
    plot: str | os.PathLike | None = None,
) -> TrainResult:
    """Train router ``kind`` on ``data``'s train split and write the artifact to ``out``.

    The validation split drives early stopping / model selection and a validation report; with
    ``eval_data`` the router is also evaluated on that dataset's ``eval_split``.
    """
    features = features or FeatureConfig()
    tracking = tracking or TrackingConfig()
    progress = sys.stderr.isatty() if progress is None else progress
    spec = get_trainer(kind)
    config_cls, fit = spec.load()
    if not isinstance(model_config, config_cls):
        raise TypeError(f"router {kind!r} takes a {config_cls.__name__}, got {type(model_config).__name__}")

    dataset = load_dataset(data)
    eval_dataset = load_dataset(eval_data) if eval_data is not None else None
    train = dataset.outcome_matrix("train")
    val = dataset.outcome_matrix("val")
    if len(train) == 0:
        raise UserError(f"dataset {dataset.name} has no prompts in its train split")

    encoder = None
    train_emb = val_emb = None
    timings: dict = {}
    if spec.uses_embeddings:
        t0 = time.perf_counter()
        encoder, (train_emb, val_emb) = encode_all(features, train.prompts, val.prompts, progress=progress)
        timings["encode_s"] = time.perf_counter() - t0

    lineage = {
        "dataset": dataset.name,
        "dataset_sha256": dataset.manifest.get("sha256"),
        "split": dataset.manifest.get("split"),
        "n_train": len(train),
        "n_val": len(val),
    }
    resolved = resolved_config or {}
    run_ctx = _maybe_run(tracking, kind, dataset)
    with run_ctx as active:
        run_id = active.info.run_id if active is not None else None
        logger = None
        if active is not None:
            import mlflow

            from routerzoo.zoo.tracking import flatten, resolve_tracking_uri

            lineage.update({"mlflow_run_id": run_id, "mlflow_experiment": tracking.experiment})
            mlflow.log_params(flatten({"router": kind, "model": resolved.get("model", {}), "features": features.__dict__, "seed": seed}))
            mlflow.log_text(json.dumps(resolved, indent=2, default=str), "config.json")
            mlflow.log_dict(dataset.manifest, "dataset/dataset.json")
            if kind == "mlp":
                from lightning.pytorch.loggers import MLFlowLogger

                logger = MLFlowLogger(experiment_name=tracking.experiment, tracking_uri=resolve_tracking_uri(tracking.tracking_uri), run_id=run_id)
        ctx = FitContext(
            train=train, val=val, train_embeddings=train_emb, val_embeddings=val_emb,
            encoder=features.encoder if spec.uses_embeddings else None,
            prices=dataset.manifest.get("prices", {}), lineage=lineage, seed=seed, logger=logger, progress=progress,
        )
        t0 = time.perf_counter()
        router, fit_metrics = fit(model_config, ctx)
        timings["fit_s"] = time.perf_counter() - t0
        if encoder is not None:
            router.set_encoder(encoder)
        router_dir = router.save(out)

        reports: dict = {}
        if len(val) > 0:
            from routerzoo.evaluation.runner import evaluate_router

            # the router holds the training encoder, whose in-memory cache already has these prompts
            reports["val"] = evaluate_router(router, dataset, "val")
        if eval_dataset is not None:
            from routerzoo.evaluation.runner import evaluate_router

            reports["eval"] = evaluate_router(router, eval_dataset, eval_split)
        if active is not None:
            from routerzoo.zoo.tracking import log_metrics

            log_metrics({**fit_metrics, **timings})
            for name, report in reports.items():
                log_metrics(summary_metrics(report), prefix=f"{name}_")
                mlflow.log_dict(report, f"reports/{name}.json")
            if plot is not None and "eval" in reports:
                from routerzoo.evaluation.plot import plot_report

                plot_report(reports["eval"], plot, title=f"{kind} on {eval_dataset.name} ({eval_split})")
                mlflow.log_artifact(str(plot), "reports")
            mlflow.log_artifacts(str(router_dir), "router")
            model_uri = version = None
            if tracking.log_model:
                from routerzoo.zoo.pyfunc import log_router_model, set_alias

                info = log_router_model(router_dir, registered_name=tracking.register)
                model_uri, version = info.model_uri, info.registered_model_version
                if tracking.alias and version is not None:
                    set_alias(tracking.register, tracking.alias, version)
                    mlflow.set_tag("routerzoo.registered", f"{tracking.register}@{tracking.alias} (v{version})")
            return TrainResult(Path(router_dir), run_id, {**fit_metrics, **timings}, reports, model_uri, version)
    return TrainResult(Path(router_dir), run_id, {**fit_metrics, **timings}, reports)


def summary_metrics(report: dict) -> dict:
    """The headline numbers of a report, flat, for MLflow metrics and tables."""
    out = {
        "aiq": report["aiq"]["router"],
        "aiq_zero_router": report["aiq"]["zero_router"],
        "aiq_oracle": report["aiq"]["oracle"],
        "gap_closed": report["gap_closed"],
        "best_single_quality": report["best_single"]["quality"],
        "max_quality": report.get("max_quality"),
        "n_prompts": report["n_prompts"],
    }
    for key in ("apgr", "apgr_routellm", "cpt50", "cpt80", "cascade_auc"):
        if report.get(key) is not None:
            out[key] = report[key]
    return out


class _NoRun:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _maybe_run(tracking: TrackingConfig, kind: str, dataset):
    if not tracking.enabled:
        return _NoRun()
    from routerzoo import __version__
    from routerzoo.zoo.tracking import run

    tags = {"routerzoo.router": kind, "routerzoo.dataset": dataset.name,
            "routerzoo.dataset_sha256": str(dataset.manifest.get("sha256")), "routerzoo.version": __version__}
    return run(tracking.experiment, run_name=tracking.run_name or kind, tags=tags, uri=tracking.tracking_uri)
