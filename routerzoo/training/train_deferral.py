"""``routerzoo train --router <deferral kind>``: fit (or just configure) a deferral scorer and save it.

A deferral scorer is trained on the answers in a dataset's train split (responses, token logprobs
and their quality), evaluated on the validation and test splits (AUROC of answer correctness, and
the deferral curve to ``--next-model`` when given) and written as an artifact of the same form as
routers (``config.json`` + ``weights.safetensors``, nothing pickled). Unsupervised kinds
(``logprob-confidence``, ``consistency``) have nothing to fit; they are saved as configured, so a
cascade can name the artifact directory like any other scorer.

A table without what the kind reads per answer (the registry's ``reads``: token logprobs, response
texts, k sampled responses) is refused before anything is fitted or written: scores computed from
inputs that are not there are constant, and their AUROC of 0.5 would look like a result.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

# re-exported from their old place: the fit contract moved beside the protocol, the metric to evaluation/
from routerzoo.evaluation.deferral import evaluate_deferral
from routerzoo.routers.core.fit_context import DeferralFitContext
from routerzoo.routers.registry import get_kind

#: what each per-query input the registry declares (``reads``) needs in a benchmark table
_READS_NEED = {"logprobs": "token logprobs", "response": "response texts",
               "samples": "k sampled responses per answer (a table holds one response each)"}


def missing_reads(kind: str, matrix, model: str = "") -> list[str]:
    """What deferral kind ``kind`` reads per query (the registry's ``reads``) that ``matrix`` holds for no
    recorded answer of ``model`` (every model's when empty); [] when the table has it all."""
    reads = get_kind(kind, role="deferral").reads
    cols = [matrix.models.index(model)] if model in matrix.models else list(range(len(matrix.models)))
    seen = list(zip(*np.nonzero(~np.isnan(matrix.quality[:, cols])), strict=True))
    missing = []
    for need in reads:
        if need == "prompt":
            continue
        table = matrix.token_logprobs if need == "logprobs" else matrix.responses
        values = [] if table is None else [table[i, cols[k]] for i, k in seen]
        if need == "samples":
            ok = any(isinstance(v, (list, tuple)) and len(v) >= 2 for v in values)
        else:
            ok = any(v is not None and (not hasattr(v, "__len__") or len(v) > 0) for v in values)
        if not ok:
            missing.append(_READS_NEED[need])
    return missing


def check_reads(kind: str, matrix, model: str = "", where: str = "dataset") -> None:
    """One line when the table lacks what ``kind`` reads, so no scorer "trains" or is calibrated on
    inputs that are not there (its scores would be constant: AUROC 0.5, a meaningless threshold)."""
    missing = missing_reads(kind, matrix, model)
    if missing:
        whose = f"the answers of {model!r}" if model else "any answer"
        raise UserError(f"{where}: the {kind!r} scorer reads {' and '.join(missing)}; the table has none for {whose} "
                        "(generate answers with token logprobs with `routerzoo data generate`, or pick a scorer that "
                        "reads what the table has)")


def train_deferral(kind: str, config=None, data: str | os.PathLike = "", out: str | os.PathLike = "", *,
                   next_model: str = "", overwrite: bool = False, seed: int = 0, tracking=None) -> tuple[object, Path, dict]:
    """Fit deferral kind ``kind`` on ``data``'s train split, evaluate it on val and test, write ``out``.

    ``tracking``: a :class:`~routerzoo.training.train.TrackingConfig` to log the run, the artifact and
    its pyfunc model to MLflow (and register it) as router training does; None: not tracked.

    Returns:
        (scorer, artifact directory, metrics: fit metrics + ``val`` / ``test`` evaluations).
    """
    from routerzoo.data.dataset import load_dataset
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.routers.deferral.artifact import save_deferral

    spec = get_kind(kind, role="deferral")
    config = spec.load_config()() if config is None else config
    check_output_dir(out, overwrite=overwrite, what="deferral scorer artifact")
    ds = load_dataset(data)
    if ds.outcomes is None:
        raise UserError(f"{data}: a deferral scorer trains on benchmark outcomes with responses; this dataset has none")
    model = getattr(config, "model", "") or ""
    if model and model not in ds.models:
        raise UserError(f"--router.model {model!r} is not in the dataset; its models: {list(ds.models)}")
    train_m = ds.outcome_matrix("train")
    check_reads(kind, train_m, model, where=f"{data}[train]")
    with tracked_run(tracking, kind, ds, config, seed) as run:
        ctx = DeferralFitContext(train_m, ds.outcome_matrix("val"), getattr(config, "encoder", None), seed)
        t0 = time.perf_counter()
        if spec.fit is None:
            scorer, metrics = spec.load_class()(config), {}
        else:
            np.random.seed(seed)
            scorer, metrics = spec.load_fit()(config, ctx)
        metrics["fit_s"] = time.perf_counter() - t0
        next_model = next_model or getattr(config, "next_model", "") or ""
        for split in ("val", "test"):
            m = ds.outcome_matrix(split)
            if len(m):
                metrics[split] = evaluate_deferral(scorer, m, model, next_model)
        lineage = role_lineage(ds, getattr(config, "encoder", None), seed, run) | {
            "fit_split": "train", "models": list(ds.models), "metrics": {k: v for k, v in metrics.items() if k != "fit_s"}}
        path = save_deferral(scorer, out, lineage=lineage, overwrite=overwrite)
        logged = run.log_result(metrics, {k: v for k, v in metrics.items() if k in ("val", "test")}, path)
    if logged.get("version") is not None:  # the registered version, for the command's report
        metrics["registered_version"] = logged["version"]
    return scorer, Path(path), metrics


def tracked_run(tracking, kind: str, dataset, config, seed: int):
    """The :class:`~routerzoo.zoo.tracking.TrainingRun` every role trains in (a no-op when ``tracking`` is None)."""
    from routerzoo.routers.core.typed_config import config_to_dict
    from routerzoo.training.train import TrackingConfig
    from routerzoo.zoo.tracking import TrainingRun

    return TrainingRun(tracking or TrackingConfig(enabled=False), kind, dataset,
                       {"kind": kind, "router": config_to_dict(config)}, None, seed)


def role_lineage(dataset, encoder: str | None, seed: int, run) -> dict:
    """The lineage routers record (dataset, sources, prices, encoder fingerprint, code version) plus the run's."""
    from routerzoo.zoo.lineage import training_lineage

    return training_lineage(dataset, encoder, seed) | run.lineage()


__all__ = ["DeferralFitContext", "check_reads", "missing_reads", "evaluate_deferral", "train_deferral"]
