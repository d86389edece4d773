"""The train entry point: dataset → fit context → fit → evaluation → artifact, tracked in MLflow.

Each step is its own function; :func:`train_router` only strings them together, and MLflow
bookkeeping lives in :class:`routerzoo.zoo.tracking.TrainingRun`. Everything a user can get wrong
(output paths, the evaluation dataset's models, the plot's file type) is checked before anything
is encoded or fitted, so a mistake never leaves a half-written artifact or a FAILED run behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from routerzoo.data.dataset import RoutingDataset, load_dataset
from routerzoo.errors import ConfigError, UserError
from routerzoo.progress import mode as progress_mode
from routerzoo.routers.core.base import Router
from routerzoo.routers.registry import get_kind, kinds
from routerzoo.training.context import FeatureConfig, FitContext
from routerzoo.training.cv import CVConfig, CVResult
from routerzoo.training.trainer_config import TrainerConfig, ddp_worker, single_process

EVAL_SPLITS = ("train", "val", "test", "all")


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
    """What a training run produced.

    Attributes:
        router: the fitted router (the same object that was saved).
        router_dir: the artifact directory.
        run_id: MLflow run id, or None when tracking is off.
        fit_metrics: the fit function's metrics plus timings.
        reports: evaluation reports by name ("val", "eval").
        model_uri: the logged pyfunc model's URI.
        registered_version: the registry version, when registered.
    """

    router: Router
    router_dir: Path
    run_id: str | None
    fit_metrics: dict
    reports: dict = field(default_factory=dict)
    model_uri: str | None = None
    registered_version: int | None = None
    cv: CVResult | None = None
    notes: list[str] = field(default_factory=list)
    auto: dict | None = None


def check_plot_path(plot: str | os.PathLike | None) -> None:
    """A plot path whose folder can be created and whose extension is PNG (or SVG/PDF)."""
    if plot is None:
        return
    path = Path(plot)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"--plot {path}: use a .png (or .svg / .pdf) file name")
    if path.is_dir():
        raise UserError(f"--plot {path} is a directory; give a file name such as {path / 'cost_quality.png'}")


def check_features(features: FeatureConfig) -> None:
    """The encoder's device exists on this machine (before anything is loaded or encoded)."""
    device = features.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--features.device {device}: no CUDA device is visible to torch on this machine")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(f"--features.device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise UserError("--features.device mps: no Apple MPS device is available on this machine")
    elif device != "cpu":
        raise UserError(f"--features.device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'")


def build_context(dataset: RoutingDataset, features: FeatureConfig, seed: int, progress: bool | str) -> FitContext:
    """The fit context of a dataset: outcome and preference splits as arrays, lineage, prices."""
    has_outcomes = dataset.outcomes is not None
    has_prefs = dataset.preferences is not None
    train = dataset.outcome_matrix("train") if has_outcomes else None
    val = dataset.outcome_matrix("val") if has_outcomes else None
    train_prefs = dataset.preference_matrix("train") if has_prefs else None
    val_prefs = dataset.preference_matrix("val") if has_prefs else None
    n_train = (len(train) if train is not None else 0) + (len(train_prefs) if train_prefs is not None else 0)
    if n_train == 0:
        raise UserError(f"dataset {dataset.name} has nothing in its train split")
    if len(dataset.models) < 2:
        raise UserError(f"dataset {dataset.name} has one model ({dataset.models}): a router needs at least two to choose between")
    lineage = {
        "dataset": dataset.name,
        "dataset_sha256": dataset.manifest.get("sha256"),
        "split": dataset.manifest.get("split"),
        "n_train": len(train) if train is not None else 0,
        "n_val": len(val) if val is not None else 0,
        "n_train_pairs": len(train_prefs) if train_prefs is not None else 0,
    }
    return FitContext(models=dataset.models, train=train, val=val, train_prefs=train_prefs, val_prefs=val_prefs,
                      features=features, prices=dataset.manifest.get("prices", {}), lineage=lineage,
                      seed=seed, progress=progress)


def check_trains_from(kind: str, trains_from: tuple[str, ...], ctx: FitContext) -> None:
    """Refuse, before fitting, a dataset holding none of what the kind declares it learns from."""
    has = {"outcomes": ctx.train is not None and len(ctx.train) > 0,
           "pairs": (ctx.train_prefs is not None and len(ctx.train_prefs) > 0)
           # pairs are derived from outcome tables, so an outcome table also feeds a pair learner
           or (ctx.train is not None and len(ctx.train) > 0)}
    if not any(has[t] for t in trains_from):
        pair_kinds = sorted(name for name, s in kinds("router").items() if "pairs" in s.trains_from)
        raise UserError(f"router {kind!r} trains on benchmark outcomes, and this dataset has none in its train split "
                        f"(preference-pair datasets train {', '.join(repr(k) for k in pair_kinds)})")


def check_eval_dataset(models: list[str], eval_dataset: RoutingDataset | None, split: str) -> None:
    """Before fitting: the evaluation dataset has every candidate model and the split exists."""
    if split not in EVAL_SPLITS:
        raise UserError(f"--eval-split {split!r}: choose one of {list(EVAL_SPLITS)}")
    if eval_dataset is None:
        return
    missing = [m for m in models if m not in eval_dataset.models]
    if missing:
        raise UserError(f"--eval-data {eval_dataset.name} has no outcomes for candidate model(s) {missing}; "
                        f"it has {eval_dataset.models}")


def evaluate_after_fit(router: Router, dataset: RoutingDataset, eval_dataset: RoutingDataset | None,
                       eval_split: str) -> dict:
    """Validation report (training dataset) and, with ``eval_dataset``, its ``eval_split`` report."""
    from routerzoo.evaluation.runner import evaluate_router, has_split

    reports: dict = {}
    if has_split(dataset, "val", router.models):
        reports["val"] = evaluate_router(router, dataset, "val")
    if eval_dataset is not None:
        reports["eval"] = evaluate_router(router, eval_dataset, eval_split)
    return reports


def train_router(
    kind: str,
    router_config=None,
    data: str | os.PathLike = "",
    out: str | os.PathLike = "",
    *,
    eval_data: str | os.PathLike | None = None,
    eval_split: str = "test",
    features: FeatureConfig | None = None,
    tracking: TrackingConfig | None = None,
    seed: int = 0,
    resolved_config: dict | None = None,
    progress: bool | str | None = None,
    plot: str | os.PathLike | None = None,
    overwrite: bool = False,
    trainer: TrainerConfig | None = None,
    cv: CVConfig | None = None,
) -> TrainResult:
    """Train router ``kind`` on ``data``'s train split and write the artifact to ``out``.

    The validation split drives early stopping / model selection and a validation report; with
    ``eval_data`` the router is also evaluated on that dataset's ``eval_split``.

    Args:
        kind: a registered router kind (``routerzoo routers``).
        router_config: the kind's typed config; None for its defaults.
        data: dataset directory.
        out: artifact directory to write (refused if it exists and is not empty, unless ``overwrite``).
        trainer: ``--trainer.*`` Lightning settings (devices, strategy, ...) for Lightning-trained routers.
        cv: K-fold cross-validation on train+val after the fit (``--cv.*``; the CLI runs 5 folds by
            default). None: off, except for ``kind="auto"`` (which chooses by CV: 5 folds).
            With folds, the out-of-fold predictions also choose the default policy.
        progress: None (a bar on a terminal, plain lines every 30 s in a log), True/False, or "bar" /
            "lines" / "off" (:mod:`routerzoo.progress`): encoding, folds and epochs.
    """
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.training.auto import AUTO, AutoConfig
    from routerzoo.zoo.tracking import TrainingRun

    is_auto = kind == AUTO
    if is_auto:  # not a kind: a search over kinds whose result is one of them (or a stack)
        spec, config_cls, fit, trains_from, uses_embeddings = None, AutoConfig, None, ("outcomes",), True
    else:
        spec = get_kind(kind, role="router")
        config_cls, fit = spec.load_config(), spec.load_fit()
        trains_from, uses_embeddings = spec.trains_from, spec.load_class().uses_embeddings
    cv = cv if cv is not None else CVConfig(folds=5 if is_auto else 0)
    router_config = config_cls() if router_config is None else router_config
    if not isinstance(router_config, config_cls):
        raise TypeError(f"router {kind!r} takes a {config_cls.__name__}, got {type(router_config).__name__}")
    features = features or FeatureConfig()
    tracking = tracking or TrackingConfig()
    progress = progress_mode(progress)  # a bar on a terminal, plain lines in a log
    worker = ddp_worker()
    if worker:  # a DDP process of rank > 0 trains its share; rank 0 tracks, evaluates and writes the artifact
        tracking, progress = TrackingConfig(enabled=False), "off"

    # everything a user can get wrong, before any encoding or fitting
    check_output_dir(out, overwrite=overwrite, what="router artifact")
    check_plot_path(plot)
    check_features(features)
    if plot is not None and eval_data is None:
        raise UserError("--plot draws the --eval-data curve; pass --eval-data too")
    dataset = load_dataset(data)
    eval_dataset = load_dataset(eval_data) if eval_data is not None else None
    check_eval_dataset(dataset.models, eval_dataset, eval_split)
    ctx = build_context(dataset, features, seed, progress)
    check_trains_from(kind, trains_from, ctx)
    ctx.trainer = trainer
    from routerzoo.zoo.lineage import training_lineage

    ctx.lineage.update(training_lineage(dataset, features.encoder if uses_embeddings else None, seed))

    with TrainingRun(tracking, kind, dataset, resolved_config or {}, features, seed, role="router") as run:
        ctx.lineage.update(run.lineage())
        ctx.logger = run.lightning_logger  # a factory: only Lightning fits import Lightning
        t0 = time.perf_counter()
        cv_result = folds = auto_info = None
        if is_auto:
            from routerzoo.training.auto import fit_auto

            router, fit_metrics, cv_result, folds, auto_info = fit_auto(router_config, ctx, cv.folds, cv.seed, progress)
        else:
            router, fit_metrics = fit(router_config, ctx)
        timings = {"fit_s": time.perf_counter() - t0}
        if worker:
            return TrainResult(router, Path(out), None, {**fit_metrics, **timings})
        if cv_result is None and cv.folds and can_cross_validate(spec, ctx):
            from routerzoo.training.cv import run_cv

            t1 = time.perf_counter()
            ctx.trainer = single_process(trainer)  # DDP workers have returned: folds fit in this process
            cv_result, folds = run_cv(kind, router.config, ctx, cv, progress)
            timings["cv_s"] = time.perf_counter() - t1
        notes = after_cv(router, cv_result, folds, cv, fit_metrics)
        if ctx.encoder is not None and router.encoder is not None:
            router.set_encoder(ctx.encoder)  # its memory cache already holds the split's prompts
        reports = evaluate_after_fit(router, dataset, eval_dataset, eval_split)
        if cv_result is not None and "val" in reports:
            warning = flattered_by_validation(reports["val"], cv_result)
            if warning:
                notes.append(warning)
        router_dir = router.save(out, overwrite=overwrite)
        logged = run.log_result({**fit_metrics, **timings}, reports, router_dir,
                                plot=plot, plot_title=f"{kind} on {eval_dataset.name} ({eval_split})" if eval_dataset else None)
    return TrainResult(router, Path(router_dir), run.run_id, {**fit_metrics, **timings}, reports,
                       logged.get("model_uri"), logged.get("version"), cv_result, notes, auto_info)


def flattered_by_validation(val_report: dict, result: CVResult) -> str | None:
    """A warning when the validation split scores the router far above its CV estimate.

    A router that chose its settings on a small validation split (kNN's k, an early-stopping epoch)
    looks better there than it is: more than two fold standard deviations above the CV mean is
    selection noise, not skill.
    """
    val, mean, sd = val_report.get("gap_closed"), result.mean(), result.sd()
    if val is None or mean is None or sd is None or val - mean <= 2 * sd:
        return None
    n = val_report.get("n_prompts")
    return (f"warning: validation gap closed {100 * val:.1f}% is far above the CV estimate {100 * mean:.1f}% ± "
            f"{100 * sd:.1f}: selecting on the {n}-prompt validation split flatters this router; trust the CV "
            "figure, or let `--router auto` choose by CV")


def can_cross_validate(spec, ctx: FitContext) -> bool:
    """CV scores one-shot routers that learn from outcome tables, on a dataset that has them."""
    return (spec.mode == "one-shot" and "outcomes" in spec.trains_from
            and ctx.train is not None and len(ctx.train) > 0 and len(ctx.train) + len(ctx.val or []) >= 30)


def after_cv(router: Router, result: CVResult | None, folds, cv: CVConfig, fit_metrics: dict) -> list[str]:
    """Record the CV summary (metrics, lineage) and set the default policy from the out-of-fold predictions.

    Returns the lines worth printing (the error-bar warning on small data, the default policy).
    """
    if result is None:
        return []
    from routerzoo.training.cv import error_bar_note, format_cv, lineage_entry

    fit_metrics.update({k: v for k, v in result.summary().items() if v is not None})
    router.lineage = dict(router.lineage, cv=lineage_entry(result, folds, cv))
    notes = [format_cv(result)]
    note = error_bar_note(result, folds.n)
    if note:
        notes.append(note)
    if cv.default_policy == "match-best":
        from routerzoo.training.default_policy import apply_default_policy, choose_default_policy

        choice = choose_default_policy(result.oof_quality, result.oof_cost, folds.data.quality, folds.data.cost,
                                       folds.fold, router.models)
        if choice is None:
            notes.append("default policy: λ = 0 (no cost weight reaches the best single model's quality out of fold)")
        else:
            apply_default_policy(router, choice)
            fit_metrics.update({"default_cost_weight": choice.cost_weight, "default_cv_quality": choice.quality[0],
                                "default_cv_cost": choice.cost[0]})
            notes.append(choice.describe())
    return notes


# summary_metrics moved to routerzoo.evaluation.report (evaluation imports no training code);
# re-exported here for callers of the old place
from routerzoo.evaluation.report import summary_metrics  # noqa: E402,F401
