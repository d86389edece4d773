"""``routerzoo calibrate``: pick the cost weight λ that meets a target, store it as the default policy.

    routerzoo calibrate ROUTER --data DIR (--target-cost USD | --target-share MODEL=P | --target-quality Q)
                        [--split val | train,val] [--test-split test] [--out DIR | --overwrite] [--json FILE]

The router predicts every prompt of the calibration split once; λ-argmax decisions are then taken
at a fine grid of cost weights (4,000 points spanning "always the best predicted model" to "always
the cheapest") and scored against the split's true outcomes:

* ``--target-cost USD``: the λ whose realised mean cost per prompt is closest to USD;
* ``--target-share MODEL=P``: the λ whose share of prompts sent to MODEL is closest to P;
* ``--target-quality Q``: the cheapest λ whose realised mean quality is at least Q.

The chosen λ becomes the artifact's default policy (``{"kind": "argmax", "config": {"cost_weight":
λ}}``), which the CLI, the pyfunc and the server use when a request sets nothing; the artifact's
lineage records the target, split and realised figures. The new artifact is written atomically to
``--out``, or over ROUTER with ``--overwrite``; with neither nothing is written. The realised figure
on the held-out ``--test-split`` is reported next to the target.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

GRID_POINTS = 4000
TARGETS = ("cost", "share", "quality")


@dataclass
class Target:
    """What to calibrate for.

    Attributes:
        kind: "cost" (mean USD per prompt), "share" (fraction of prompts sent to ``model``) or
            "quality" (mean realised quality, reached at the lowest cost).
        value: the target figure.
        model: the model of a share target.
    """

    kind: str
    value: float
    model: str | None = None

    def describe(self) -> str:
        if self.kind == "cost":
            return f"mean cost ${self.value:.6g}/prompt"
        if self.kind == "share":
            return f"share of {self.model} {self.value:.3g}"
        return f"quality >= {self.value:.4g}"


@dataclass
class Realised:
    """What a λ gives on one split."""

    split: str
    n_prompts: int
    cost: float
    quality: float
    share: dict

    def figure(self, target: Target) -> float:
        if target.kind == "cost":
            return self.cost
        if target.kind == "share":
            return self.share[target.model]
        return self.quality


@dataclass
class Calibration:
    """The chosen cost weight and what it realises on the calibration and test splits."""

    target: Target
    cost_weight: float
    calibration: Realised
    test: Realised | None

    def to_dict(self) -> dict:
        out = {"target": asdict(self.target), "cost_weight": self.cost_weight, "calibration": asdict(self.calibration),
               "test": asdict(self.test) if self.test is not None else None}
        if self.test is not None:
            got = self.test.figure(self.target)
            out["test_figure"] = got
            out["test_relative_error"] = (got - self.target.value) / self.target.value if self.target.value else None
        return out


SPLITS = ("train", "val", "test")


def _split_predictions(router, dataset, split: str):
    """Predictions and outcomes of one split, or of several joined by commas ("train,val")."""
    from routerzoo.evaluation.runner import evaluation_matrix, use_embedding_cache
    from routerzoo.routers.prediction import Prediction

    parts = [p.strip() for p in split.split(",")]
    bad = [p for p in parts if p not in SPLITS + ("all",)] + (["all"] if "all" in parts and len(parts) > 1 else [])
    if bad or len(set(parts)) != len(parts):
        raise UserError(f"split {split!r}: give one of {list(SPLITS + ('all',))} or several of {list(SPLITS)} joined by commas")
    use_embedding_cache(router)
    preds, qs, cs = [], [], []
    for part in parts:
        matrix, _ = evaluation_matrix(router, dataset, part)
        preds.append(router.predict(matrix.prompts))
        qs.append(matrix.quality)
        cs.append(matrix.cost)
    pred = Prediction(np.concatenate([p.quality for p in preds]), np.concatenate([p.cost for p in preds]))
    return pred, np.concatenate(qs), np.concatenate(cs)


def _realised(decisions: np.ndarray, tq: np.ndarray, tc: np.ndarray, models: list[str], split: str) -> Realised:
    rows = np.arange(len(decisions))
    share = np.bincount(decisions, minlength=len(models)) / max(len(decisions), 1)
    return Realised(split, int(len(decisions)), float(tc[rows, decisions].mean()), float(tq[rows, decisions].mean()),
                    {m: float(s) for m, s in zip(models, share, strict=True)})


def choose_cost_weight(pred_quality: np.ndarray, pred_cost: np.ndarray, true_quality: np.ndarray,
                       true_cost: np.ndarray, models: list[str], target: Target) -> tuple[float, np.ndarray]:
    """The cost weight meeting ``target`` on these prompts, and its (n,) decisions.

    Raises:
        UserError: a quality target no cost weight reaches on these prompts.
    """
    from routerzoo.evaluation.sweep import cost_weight_grid
    from routerzoo.routers.policies.argmax import decide

    spread = float(np.ptp(pred_quality)) or 1.0
    grid = cost_weight_grid(pred_cost, GRID_POINTS, quality_range=spread)
    rows = np.arange(pred_quality.shape[0])
    j = models.index(target.model) if target.kind == "share" else None
    figures, costs, all_d = np.empty(len(grid)), np.empty(len(grid)), []
    for i, lam in enumerate(grid):
        d = decide(pred_quality, pred_cost, float(lam))
        all_d.append(d)
        costs[i] = true_cost[rows, d].mean()
        if target.kind == "cost":
            figures[i] = costs[i]
        elif target.kind == "share":
            figures[i] = float(np.mean(d == j))
        else:
            figures[i] = true_quality[rows, d].mean()
    if target.kind == "quality":
        ok = np.flatnonzero(figures >= target.value - 1e-12)
        if ok.size == 0:
            raise UserError(f"--target-quality {target.value:g}: the router reaches at most {figures.max():.4f} on the "
                            "calibration split at any cost weight")
        best = int(ok[np.lexsort((-grid[ok], costs[ok]))[0]])  # cheapest, then the larger λ
    else:
        err = np.abs(figures - target.value)
        best = int(np.lexsort((-grid, err))[0])  # closest, then the larger λ (cheaper)
    return float(grid[best]), all_d[best]


def calibrate(router, dataset, target: Target, split: str = "val", test_split: str | None = "test") -> Calibration:
    """Choose λ on ``split`` of ``dataset``; measure it on ``test_split``. Does not modify ``router``."""
    from routerzoo.evaluation.runner import has_split
    from routerzoo.routers.policies.argmax import decide

    if target.kind not in TARGETS:
        raise UserError(f"calibration target must be one of {list(TARGETS)}, got {target.kind!r}")
    if target.kind == "share" and target.model not in router.models:
        raise UserError(f"--target-share {target.model}: not a candidate model of this router; candidates: {router.models}")
    if dataset.outcomes is None:
        raise UserError(f"dataset {dataset.name} has no benchmark outcomes: calibration needs each model's realised cost and quality")
    pred, tq, tc = _split_predictions(router, dataset, split)
    lam, d = choose_cost_weight(pred.quality, pred.cost, tq, tc, router.models, target)
    cal = _realised(d, tq, tc, router.models, split)
    test = None
    if test_split and test_split != split and has_split(dataset, test_split, router.models):
        tpred, ttq, ttc = _split_predictions(router, dataset, test_split)
        test = _realised(decide(tpred.quality, tpred.cost, lam), ttq, ttc, router.models, test_split)
    return Calibration(target, lam, cal, test)


def apply_calibration(router, result: Calibration, dataset) -> None:
    """Set ``router``'s default policy to λ-argmax at the calibrated λ and record it in its lineage."""
    from routerzoo.routers.policies.argmax import ArgmaxConfig, ArgmaxPolicy

    router.policy = ArgmaxPolicy(ArgmaxConfig(cost_weight=result.cost_weight))
    router.lineage = dict(router.lineage, calibration={
        "target": asdict(result.target), "cost_weight": result.cost_weight, "dataset": dataset.name,
        "dataset_sha256": dataset.manifest.get("sha256"), "split": result.calibration.split,
        "realised": result.calibration.figure(result.target),
    })


# -- command line ----------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``calibrate`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "calibrate", help="set a router's default cost weight from a cost, share or quality target",
        description=("Pick the cost weight λ that meets a target on a calibration split (default val), store it as "
                     "the artifact's default policy (used by eval, the pyfunc and the server when a request sets "
                     "nothing), and report the realised figure on the test split next to the target."))
    p.add_argument("router", metavar="ROUTER", help="router artifact directory (or models:/NAME@ALIAS with --out)")
    p.add_argument("--data", required=True, help="dataset directory with benchmark outcomes")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-cost", type=float, metavar="USD", help="mean cost per prompt, USD")
    target.add_argument("--target-share", metavar="MODEL=P", help="share P in [0, 1] of prompts sent to MODEL")
    target.add_argument("--target-quality", type=float, metavar="Q", help="mean quality to reach at the lowest cost")
    p.add_argument("--split", default="val", help="calibration split (default val); several joined by commas, e.g. train,val, "
                                                  "calibrate on more prompts (the router's own training prompts are in-sample)")
    p.add_argument("--test-split", default="test", choices=["train", "val", "test", "all", "none"],
                   help="split the realised figure is reported on (default test; none to skip)")
    p.add_argument("--out", help="write the calibrated artifact here (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists, or, without --out, ROUTER in place")
    p.add_argument("--json", dest="json_out", help="write the calibration result as JSON here")
    return p


def parse_target(args) -> Target:
    """The :class:`Target` the flags describe, checked."""
    if args.target_cost is not None:
        if not (math.isfinite(args.target_cost) and args.target_cost > 0):
            raise UserError(f"--target-cost must be a positive number of USD, got {args.target_cost}")
        return Target("cost", float(args.target_cost))
    if args.target_quality is not None:
        if not math.isfinite(args.target_quality):
            raise UserError(f"--target-quality must be a number, got {args.target_quality}")
        return Target("quality", float(args.target_quality))
    model, sep, value = str(args.target_share).rpartition("=")
    try:
        share = float(value)
    except ValueError:
        share = float("nan")
    if not sep or not model or not (0.0 <= share <= 1.0):
        raise UserError(f"--target-share must be MODEL=P with P in [0, 1], got {args.target_share!r}")
    return Target("share", share, model)


def _fmt(target: Target, x: float) -> str:
    return f"${x:.6g}" if target.kind == "cost" else f"{x:.4f}"


def run(args) -> int:
    """The ``calibrate`` command."""
    from routerzoo.data.dataset import load_dataset
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.routers import load_router
    from routerzoo.routers.loader import is_uri

    target = parse_target(args)
    dest = None
    if args.out:
        dest = Path(args.out)
        check_output_dir(dest, overwrite=args.overwrite, what="router artifact")
    elif args.overwrite:
        if is_uri(args.router):
            raise UserError(f"--overwrite without --out replaces a directory; {args.router} is a URI (give --out DIR)")
        dest = Path(args.router)
    if args.json_out and Path(args.json_out).is_dir():
        raise UserError(f"--json {args.json_out} is a directory; give a file name")
    router = load_router(args.router)
    dataset = load_dataset(args.data)
    result = calibrate(router, dataset, target, args.split, None if args.test_split == "none" else args.test_split)
    cal = result.calibration
    print(f"calibrated cost_weight λ = {result.cost_weight:.6g} on {dataset.name}[{cal.split}] ({cal.n_prompts} prompts) "
          f"for {target.describe()}: realised {_fmt(target, cal.figure(target))} "
          f"(mean cost ${cal.cost:.6g}, quality {cal.quality:.4f})")
    if result.test is not None:
        t = result.test
        got = t.figure(target)
        rel = f" ({100 * (got - target.value) / target.value:+.1f}% vs target)" if target.value else ""
        print(f"{dataset.name}[{t.split}] ({t.n_prompts} prompts): target {_fmt(target, target.value)}, "
              f"realised {_fmt(target, got)}{rel}; mean cost ${t.cost:.6g}, quality {t.quality:.4f}")
    if dest is not None:
        apply_calibration(router, result, dataset)
        router.save(dest, overwrite=args.overwrite)
        print(f"wrote {dest} (default policy: argmax, cost_weight {result.cost_weight:.6g})")
    else:
        print("nothing written (give --out DIR, or --overwrite to update ROUTER in place)")
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        tmp.replace(out)
    return 0
