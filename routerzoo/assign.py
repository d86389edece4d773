"""``routerzoo assign``: route a whole batch of prompts offline under a budget and per-model capacity.

    routerzoo assign ROUTER --prompts FILE --budget USD [--capacity MODEL=SHARE ...]
                     [--cost-weight λ] --out FILE [--overwrite]

For offline jobs (a nightly batch), where the batch is known up front: the router predicts quality
and cost for every prompt, and :class:`~routerzoo.routers.policies.assignment.AssignmentPolicy`
chooses one model per prompt to maximise the batch's total predicted quality (minus ``λ·cost``
with ``--cost-weight``) such that the total predicted cost stays within ``--budget`` and no
capped model gets more than its share of the prompts.

``--prompts`` is CSV, JSONL or Parquet (by extension) with a ``prompt`` column and optionally an
``id`` (or ``prompt_id``) column. ``--out`` (CSV, JSONL or Parquet, by extension) gets one row per
prompt: ``id``, ``model``, ``predicted_quality``, ``predicted_cost``; ``OUT.summary.json`` gets the
summary (total predicted cost vs budget, share per model), which is also printed. Both are written
atomically; existing files are refused unless ``--overwrite``. An infeasible budget or capacity is
one line and exit status 2, and nothing is written.

pandas is used here (a command, not the inference path): routers and the server never import it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
ID_COLUMNS = ("id", "prompt_id")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "assign", help="route a batch of prompts under a budget and per-model capacity",
        description="Choose one model per prompt for a whole batch: maximise total predicted quality "
                    "within a USD budget and per-model traffic shares (HiGHS LP + exact MILP).",
    )  # fmt: skip
    p.add_argument("router", help="router artifact directory or models:/NAME@ALIAS")
    p.add_argument("--prompts", required=True, help="CSV, JSONL or Parquet with a 'prompt' column (and optionally 'id')")
    p.add_argument("--budget", required=True, type=float, help="total USD the batch may cost (by predicted cost)")
    p.add_argument("--capacity", action="append", default=[], metavar="MODEL=SHARE",
                   help="at most SHARE (0-1] of the prompts to MODEL; repeat for several models")
    p.add_argument("--cost-weight", type=float, default=0.0,
                   help="λ >= 0: maximise quality - λ·cost instead of quality (default 0)")
    p.add_argument("--time-limit", type=float, default=30.0, help="solver time limit in seconds (default 30)")
    p.add_argument("--out", required=True, help="per-prompt decisions (CSV, JSONL or Parquet by extension)")
    p.add_argument("--overwrite", action="store_true", help="replace --out and its summary if they exist")
    return p


def _format(path: Path, flag: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{flag} {path}: unknown extension {path.suffix!r}; use one of {sorted(FORMATS)}")
    return fmt


def parse_capacity(items: list[str]) -> dict[str, float] | None:
    """``["big=0.2", ...]`` → ``{"big": 0.2}``, or a UserError naming the bad item."""
    out: dict[str, float] = {}
    for item in items:
        model, sep, share = item.rpartition("=")
        try:
            value = float(share)
        except ValueError:
            value = float("nan")
        if not sep or not model or not (math.isfinite(value) and 0 < value <= 1):
            raise UserError(f"--capacity {item!r}: expected MODEL=SHARE with SHARE in (0, 1]")
        if model in out:
            raise UserError(f"--capacity names {model!r} twice")
        out[model] = value
    return out or None


def read_prompts(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, prompts) from a CSV / JSONL / Parquet file; errors name the file, row and field."""
    import pandas as pd

    path = Path(path)
    fmt = _format(path, "--prompts")
    if not path.is_file():
        raise UserError(f"--prompts {path}: no such file")
    try:
        if fmt == "csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif fmt == "jsonl":
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            df = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read as {fmt}: {first}") from None
    if "prompt" not in df.columns:
        raise UserError(f"{path}: no 'prompt' field (columns: {list(df.columns)[:10]})")
    if len(df) == 0:
        raise UserError(f"{path}: no prompts")
    prompts = df["prompt"].tolist()
    # rows are numbered as a user sees them: data row 1 is the first after a CSV header / the first line
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise UserError(f"{path}: row {i + 1}, field 'prompt': expected non-empty text, got {p!r}")
    id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
    if id_col is None:
        ids = [str(i) for i in range(len(prompts))]
    else:
        ids = []
        for i, v in enumerate(df[id_col].tolist()):
            if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == "":
                raise UserError(f"{path}: row {i + 1}, field {id_col!r}: missing id")
            ids.append(str(v))
        seen: dict[str, int] = {}
        for i, v in enumerate(ids):
            if v in seen:
                raise UserError(f"{path}: row {i + 1}, field {id_col!r}: id {v!r} repeats row {seen[v] + 1}")
            seen[v] = i
    return ids, prompts


def assign(router, prompts: list[str], budget: float, capacity: dict[str, float] | None = None,
           cost_weight: float = 0.0, time_limit_s: float = 30.0):
    """Joint assignment of a batch.

    Args:
        router: a loaded router.
        prompts: n prompts.
        budget: total USD for the batch (by predicted cost).
        capacity: model → largest share of the batch, or None.
        cost_weight: λ >= 0; the objective is Σ (q̂ − λ·ĉ) of the chosen models.
        time_limit_s: solver time limit.

    Returns:
        ``(choice, pred)``: (n,) model indices and the router's :class:`Prediction` (n, m).

    Raises:
        InfeasibleError: no assignment meets the budget and capacities (one line, with the shortfall).
    """
    from routerzoo.evaluation.runner import use_embedding_cache
    from routerzoo.routers.core.prediction import Prediction
    from routerzoo.routers.policies.assignment import AssignmentConfig, AssignmentPolicy

    if not (math.isfinite(cost_weight) and cost_weight >= 0):
        raise UserError(f"--cost-weight must be a finite number >= 0, got {cost_weight}")
    policy = AssignmentPolicy(AssignmentConfig(budget=budget, capacity=capacity, time_limit_s=time_limit_s))
    use_embedding_cache(router)  # an offline batch job: reuse (and fill) the on-disk embedding cache
    pred = router.predict(prompts)
    # λ enters the objective only: the budget still bounds the predicted cost itself
    objective = Prediction(pred.quality - cost_weight * pred.cost, pred.cost) if cost_weight else pred
    return policy.decide(objective, router.models), pred


def summarise(choice: np.ndarray, pred, models: list[str], budget: float, capacity: dict | None) -> dict:
    """Totals of an assignment: predicted cost vs budget, mean predicted quality, share per model."""
    n = len(choice)
    rows = np.arange(n)
    counts = np.bincount(choice, minlength=len(models))
    total = float(pred.cost[rows, choice].sum())
    return {
        "n_prompts": n,
        "budget": float(budget),
        "predicted_cost": total,
        "budget_used": total / budget if budget > 0 else None,
        "predicted_quality_mean": float(pred.quality[rows, choice].mean()),
        "share": {m: float(c) / n for m, c in zip(models, counts, strict=True)},
        "count": {m: int(c) for m, c in zip(models, counts, strict=True)},
        "capacity": capacity or {},
    }


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)  # a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)


def write_decisions(path: Path, ids: list[str], choice: np.ndarray, pred, models: list[str]) -> None:
    import pandas as pd

    rows = np.arange(len(choice))
    df = pd.DataFrame({
        "id": ids,
        "model": [models[j] for j in choice],
        "predicted_quality": pred.quality[rows, choice],
        "predicted_cost": pred.cost[rows, choice],
    })
    fmt = _format(path, "--out")
    if fmt == "csv":
        _write_atomic(path, lambda p: df.to_csv(p, index=False))
    elif fmt == "jsonl":
        _write_atomic(path, lambda p: df.to_json(p, orient="records", lines=True))
    else:
        _write_atomic(path, lambda p: df.to_parquet(p, index=False))


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def run(args) -> int:
    """The ``assign`` command."""
    from routerzoo.routers import load_router

    out = Path(args.out)
    _format(out, "--out")
    summary_out = summary_path(out)
    for path in (out, summary_out):
        if path.is_dir():
            raise UserError(f"--out {path} is a directory; give a file name")
        if path.exists() and not args.overwrite:
            raise UserError(f"{path} exists; pass --overwrite to replace it")
    if not (math.isfinite(args.budget) and args.budget >= 0):
        raise UserError(f"--budget must be a finite number of USD >= 0, got {args.budget}")
    capacity = parse_capacity(args.capacity)
    ids, prompts = read_prompts(args.prompts)
    router = load_router(args.router)
    unknown = router.cost_model.unknown_models()
    if unknown:
        # its predicted cost of those models is 0: the budget would never bind
        raise UserError(f"--budget: {args.router} ({router.kind}) predicts no cost for {unknown} (trained without costs), "
                        "so a budget cannot be kept; use a router trained on outcomes with costs")
    if capacity:
        unknown = sorted(set(capacity) - set(router.models))
        if unknown:
            raise UserError(f"--capacity names {unknown}, not candidates of {args.router}: {router.models}")
    choice, pred = assign(router, prompts, args.budget, capacity, args.cost_weight, args.time_limit)
    summary = summarise(choice, pred, router.models, args.budget, capacity)
    write_decisions(out, ids, choice, pred, router.models)
    _write_atomic(summary_out, lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    used = f" ({100 * summary['budget_used']:.1f}%)" if summary["budget_used"] is not None else ""
    print(f"assigned {summary['n_prompts']} prompts: predicted cost ${summary['predicted_cost']:.6g} of "
          f"budget ${args.budget:.6g}{used}, mean predicted quality {summary['predicted_quality_mean']:.4f}")
    for m in router.models:
        cap = f" (cap {capacity[m]:.3g})" if capacity and m in capacity else ""
        print(f"  {m:<24} {summary['count'][m]:>7}  {100 * summary['share'][m]:5.1f}%{cap}")
    print(f"decisions: {out}\nsummary: {summary_out}")
    return 0
