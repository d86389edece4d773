"""``routerzoo calibrate``: pick the cost weight λ that meets a target, store it as the default policy.

    routerzoo calibrate ROUTER --data DIR (--target-cost USD | --target-share MODEL=P | --target-quality Q)
                        [--split val | train,val] [--test-split test] [--folds 5] [--allow-miss]
                        (--out DIR | --overwrite | --register NAME [--alias A] | --dry-run) [--json FILE]

The router predicts every prompt of the calibration split once; λ-argmax decisions are then taken
at a fine grid of cost weights (4,000 points spanning "always the best predicted model" to "always
the cheapest") and scored against the split's true outcomes:

* ``--target-cost USD``: the λ whose realised mean cost per prompt is closest to USD (a ceiling: a
  target above what λ = 0 spends is met by λ = 0);
* ``--target-share MODEL=P``: the λ whose share of prompts sent to MODEL is closest to P;
* ``--target-quality Q``: the cheapest λ whose realised mean quality is at least Q.

A target no λ meets on the calibration split (a cost below the cheapest choices, a share or quality
out of the grid's range) is refused in one line giving the reachable range, and nothing is written;
``--allow-miss`` writes the nearest point with a warning instead. A cost or share target for a
router that predicts no cost for some candidate (trained on preference pairs only) is refused: λ
cannot steer it.

Honest figures: K-fold cross-validation on the calibration prompts (λ chosen without each fold,
applied to it) gives the out-of-fold figure with a 95% bootstrap CI, an estimate of what the chosen
λ realises on new prompts; the held-out ``--test-split`` figure is reported with its CI too.

The chosen λ becomes the artifact's default policy (``{"kind": "argmax", "config": {"cost_weight":
λ}}``), which the CLI, the pyfunc and the server use when a request sets nothing; the artifact's
lineage records the target, split, realised and cross-validated figures. The new artifact is written
atomically to ``--out``, or over ROUTER with ``--overwrite``, and/or registered as a new version of
``--register NAME`` (``--alias A`` pointing at it; name and alias are checked before anything is
written). A command that would write nothing is refused unless ``--dry-run``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from routerzoo.data.fsutil import atomic_write_text
from routerzoo.errors import UserError

GRID_POINTS = 4000
TARGETS = ("cost", "share", "quality")


@dataclass
class Target:
    """What to calibrate for.

    Attributes:
        metric: "cost" (mean USD per prompt), "share" (fraction of prompts sent to ``model``) or
            "quality" (mean realised quality, reached at the lowest cost).
        value: the target figure.
        model: the model of a share target.
    """

    metric: str
    value: float
    model: str | None = None

    def to_dict(self) -> dict:
        # saved under "kind", as in the lineage of routers calibrated before the rename
        return {"kind": self.metric, "value": self.value, "model": self.model}

    def describe(self) -> str:
        if self.metric == "cost":
            return f"mean cost ${self.value:.6g}/prompt"
        if self.metric == "share":
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
        if target.metric == "cost":
            return self.cost
        if target.metric == "share":
            return self.share[target.model]
        return self.quality


@dataclass
class Calibration:
    """The chosen cost weight and what it realises on the calibration and test splits."""

    target: Target
    cost_weight: float
    calibration: Realised
    test: Realised | None
    #: the figure's range over every cost weight on the calibration prompts
    reachable: tuple[float, float] = (math.nan, math.nan)
    #: no cost weight met the target (the nearest point was kept: ``allow_miss``)
    missed: bool = False
    #: out-of-fold estimate on the calibration prompts (:func:`cross_validate`), or None
    cv: dict | None = None
    #: 95% bootstrap CI of the test figure, or None
    test_ci: tuple[float, float] | None = None
    #: the cost weights over which decisions change on the calibration prompts (:attr:`Sweep.useful_range`)
    useful_range: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict:
        out = {"target": self.target.to_dict(), "cost_weight": self.cost_weight, "calibration": asdict(self.calibration),
               "test": asdict(self.test) if self.test is not None else None, "reachable": list(self.reachable),
               "missed": self.missed, "cv": self.cv, "test_ci95": list(self.test_ci) if self.test_ci else None,
               "useful_cost_weights": list(self.useful_range)}
        if self.test is not None:
            got = self.test.figure(self.target)
            out["test_figure"] = got
            out["test_relative_error"] = (got - self.target.value) / self.target.value if self.target.value else None
        return out


SPLITS = ("train", "val", "test")


def _split_predictions(router, dataset, split: str):
    """Predictions and outcomes of one split, or of several joined by commas ("train,val")."""
    from routerzoo.evaluation.runner import evaluation_matrix, use_embedding_cache
    from routerzoo.routers.core.prediction import Prediction

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


class TargetMissed(UserError):
    """No cost weight meets the target on the calibration prompts (the message gives the reachable range)."""


@dataclass
class Sweep:
    """Realised figures of every cost weight of the grid on one set of prompts."""

    grid: np.ndarray
    figures: np.ndarray
    costs: np.ndarray
    decisions: list

    @property
    def reachable(self) -> tuple[float, float]:
        return float(self.figures.min()), float(self.figures.max())

    @property
    def useful_range(self) -> tuple[float, float]:
        """The cost weights over which decisions change: below the first, every λ decides as λ = 0;
        from the second on, as the largest λ (every prompt to its cheapest predicted model)."""
        first = [i for i, d in enumerate(self.decisions) if not np.array_equal(d, self.decisions[0])]
        last = [i for i, d in enumerate(self.decisions) if np.array_equal(d, self.decisions[-1])]
        return float(self.grid[first[0]] if first else self.grid[0]), float(self.grid[last[0]])


def sweep(pred_quality: np.ndarray, pred_cost: np.ndarray, true_quality: np.ndarray, true_cost: np.ndarray,
          models: list[str], target: Target) -> Sweep:
    """λ-argmax decisions over the cost-weight grid and the target's realised figure at each."""
    from routerzoo.evaluation.sweep import cost_weight_grid
    from routerzoo.routers.policies.argmax import decide

    spread = float(np.ptp(pred_quality)) or 1.0
    grid = cost_weight_grid(pred_cost, GRID_POINTS, quality_range=spread)
    rows = np.arange(pred_quality.shape[0])
    j = models.index(target.model) if target.metric == "share" else None
    figures, costs, all_d = np.empty(len(grid)), np.empty(len(grid)), []
    for i, lam in enumerate(grid):
        d = decide(pred_quality, pred_cost, float(lam))
        all_d.append(d)
        costs[i] = true_cost[rows, d].mean()
        if target.metric == "cost":
            figures[i] = costs[i]
        elif target.metric == "share":
            figures[i] = float(np.mean(d == j))
        else:
            figures[i] = true_quality[rows, d].mean()
    return Sweep(grid, figures, costs, all_d)


def _miss_message(target: Target, lo: float, hi: float, where: str) -> str:
    if target.metric == "quality":
        return (f"--target-quality {target.value:g}: the router reaches at most {hi:.4f} on {where} at any cost weight; "
                f"give a target <= {hi:.4f}, or --allow-miss to write the highest-quality point")
    if target.metric == "cost":
        return (f"--target-cost {target.value:g}: out of reach; on {where} the router's mean cost is at least ${lo:.6g} "
                f"per prompt at any cost weight (its cheapest choices); give a target >= ${lo:.6g}, or --allow-miss "
                "to write that cheapest point")
    return (f"--target-share {target.model}={target.value:g}: out of reach; on {where} the router sends between "
            f"{lo:.3f} and {hi:.3f} of the prompts to {target.model} at any cost weight; give a share in that range, "
            "or --allow-miss to write the nearest point")


def pick(s: Sweep, target: Target, *, allow_miss: bool = False, where: str = "the calibration split") -> tuple[int, bool]:
    """Index of the grid point meeting ``target`` and whether the target was missed.

    A cost target is a ceiling: met when some λ spends at most it (one the router spends less than
    at λ = 0 is met by λ = 0). A share target is met inside the range of shares the grid reaches, a
    quality target when some λ reaches it. A missed target raises :class:`TargetMissed` unless
    ``allow_miss``, which gives the nearest point (cost and share: closest figure; quality: the
    highest quality, cheapest).
    """
    lo, hi = s.reachable
    tol = 1e-9 * max(abs(target.value), 1e-12)
    if target.metric == "quality":
        ok = np.flatnonzero(s.figures >= target.value - 1e-12)
        missed = ok.size == 0
        if missed:
            ok = np.flatnonzero(s.figures >= hi - 1e-12)
        best = int(ok[np.lexsort((-s.grid[ok], s.costs[ok]))[0]])  # cheapest, then the larger λ (cheaper)
    else:
        missed = target.value < lo - tol if target.metric == "cost" else not (lo - 1e-9 <= target.value <= hi + 1e-9)
        err = np.abs(s.figures - target.value)
        best = int(np.lexsort((-s.grid, err))[0])  # closest, then the larger λ (cheaper)
    if missed and not allow_miss:
        raise TargetMissed(_miss_message(target, lo, hi, where))
    return best, bool(missed)


def choose_cost_weight(pred_quality: np.ndarray, pred_cost: np.ndarray, true_quality: np.ndarray,
                       true_cost: np.ndarray, models: list[str], target: Target, *,
                       allow_miss: bool = False) -> tuple[float, np.ndarray]:
    """The cost weight meeting ``target`` on these prompts, and its (n,) decisions.

    Raises:
        TargetMissed: a target no cost weight meets on these prompts (unless ``allow_miss``: then
            the nearest point).
    """
    s = sweep(pred_quality, pred_cost, true_quality, true_cost, models, target)
    best, _ = pick(s, target, allow_miss=allow_miss)
    return float(s.grid[best]), s.decisions[best]


def per_prompt_figure(decisions: np.ndarray, tq: np.ndarray, tc: np.ndarray, models: list[str], target: Target) -> np.ndarray:
    """(n,) each prompt's contribution to the target's figure (its mean is the figure)."""
    rows = np.arange(len(decisions))
    if target.metric == "cost":
        return tc[rows, decisions]
    if target.metric == "share":
        return (decisions == models.index(target.model)).astype(np.float64)
    return tq[rows, decisions]


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (resampling prompts)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def cross_validate(pred_quality: np.ndarray, pred_cost: np.ndarray, tq: np.ndarray, tc: np.ndarray, models: list[str],
                   target: Target, folds: int = 5, seed: int = 0) -> dict | None:
    """What choosing λ this way gives on prompts it was not chosen on: K-fold, out of fold.

    Each fold's λ is chosen on the other folds (the nearest point where those miss) and applied to
    the fold; the out-of-fold figure, with a bootstrap CI over prompts, estimates what the λ chosen
    on all calibration prompts realises on new prompts. None when there are too few prompts.
    """
    from routerzoo.routers.policies.argmax import decide

    n = pred_quality.shape[0]
    if folds < 2 or n < 2 * folds:
        return None
    fold = np.random.default_rng(seed).permutation(n) % folds
    d = np.empty(n, dtype=int)
    lams = []
    for k in range(folds):
        tr, te = fold != k, fold == k
        s = sweep(pred_quality[tr], pred_cost[tr], tq[tr], tc[tr], models, target)
        best, _ = pick(s, target, allow_miss=True)
        lams.append(float(s.grid[best]))
        d[te] = decide(pred_quality[te], pred_cost[te], lams[-1])
    per = per_prompt_figure(d, tq, tc, models, target)
    lo, hi = bootstrap_ci(per, seed=seed)
    return {"folds": folds, "figure": float(per.mean()), "ci95": [lo, hi], "cost_weights": lams}


def calibrate(router, dataset, target: Target, split: str = "val", test_split: str | None = "test", *,
              allow_miss: bool = False, folds: int = 5, seed: int = 0) -> Calibration:
    """Choose λ on ``split`` of ``dataset``; measure it on ``test_split``. Does not modify ``router``.

    Raises:
        TargetMissed: no cost weight meets the target on ``split`` (unless ``allow_miss``).
        UserError: a cost or share target for a router that predicts no cost for some candidate
            (λ cannot act on it), or data without outcomes.
    """
    from routerzoo.evaluation.runner import has_split
    from routerzoo.routers.policies.argmax import decide

    if target.metric not in TARGETS:
        raise UserError(f"calibration target must be one of {list(TARGETS)}, got {target.metric!r}")
    if target.metric == "share" and target.model not in router.models:
        raise UserError(f"--target-share {target.model}: not a candidate model of this router; candidates: {router.models}")
    unknown = router.cost_model.unknown_models()
    if target.metric != "quality" and unknown:
        raise UserError(f"--target-{target.metric}: this {router.kind!r} router predicts no cost for {unknown} (it was "
                        "trained without costs), so the cost weight cannot steer it; retrain it on outcomes with costs, "
                        "or give --target-quality")
    if dataset.outcomes is None:
        raise UserError(f"dataset {dataset.name} has no benchmark outcomes: calibration needs each model's realised cost and quality")
    pred, tq, tc = _split_predictions(router, dataset, split)
    s = sweep(pred.quality, pred.cost, tq, tc, router.models, target)
    best, missed = pick(s, target, allow_miss=allow_miss, where=f"{dataset.name}[{split}]")
    lam, d = float(s.grid[best]), s.decisions[best]
    cal = _realised(d, tq, tc, router.models, split)
    cv = cross_validate(pred.quality, pred.cost, tq, tc, router.models, target, folds, seed)
    test, test_ci = None, None
    if test_split and test_split != split and has_split(dataset, test_split, router.models):
        tpred, ttq, ttc = _split_predictions(router, dataset, test_split)
        td = decide(tpred.quality, tpred.cost, lam)
        test = _realised(td, ttq, ttc, router.models, test_split)
        test_ci = bootstrap_ci(per_prompt_figure(td, ttq, ttc, router.models, target), seed=seed)
    return Calibration(target, lam, cal, test, s.reachable, missed, cv, test_ci, s.useful_range)


def apply_calibration(router, result: Calibration, dataset) -> None:
    """Set ``router``'s default policy to λ-argmax at the calibrated λ and record it in its lineage."""
    from routerzoo.routers.policies.argmax import ArgmaxConfig, ArgmaxPolicy

    router.policy = ArgmaxPolicy(ArgmaxConfig(cost_weight=result.cost_weight))
    router.lineage = dict(router.lineage, calibration={
        "target": result.target.to_dict(), "cost_weight": result.cost_weight, "dataset": dataset.name,
        "dataset_sha256": dataset.manifest.get("sha256"), "split": result.calibration.split,
        "realised": result.calibration.figure(result.target), "missed": result.missed,
        "cv": result.cv, "test_ci95": list(result.test_ci) if result.test_ci else None,
    })


# -- command line (its flags: routerzoo/cli.py) ----------------------------------------------------
def parse_target(args) -> Target:
    """The :class:`Target` the flags describe, checked."""
    if args.target_cost is not None:
        if not (math.isfinite(args.target_cost) and args.target_cost > 0):
            raise UserError(f"--target-cost must be a positive number of USD, got {args.target_cost}")
        return Target("cost", float(args.target_cost))
    if args.target_quality is not None:
        if not (math.isfinite(args.target_quality) and 0.0 <= args.target_quality <= 1.0):
            raise UserError(f"--target-quality must be a quality in [0, 1], got {args.target_quality}")
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
    return f"${x:.6g}" if target.metric == "cost" else f"{x:.4f}"


def _ci(target: Target, ci) -> str:
    return f" [95% CI {_fmt(target, ci[0])}, {_fmt(target, ci[1])}]" if ci else ""


def _rel(target: Target, got: float) -> str:
    return f" ({100 * (got - target.value) / target.value:+.1f}% vs target)" if target.value else ""


def _check_destination(args):
    """Where the calibrated artifact goes (a directory, or None for a temporary one to register), checked
    before any work; refuses a command that would write nothing unless ``--dry-run``."""
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.routers.core.loader import is_uri

    if args.dry_run and (args.out or args.overwrite or args.register):
        raise UserError("--dry-run writes nothing; drop --out / --overwrite / --register, or --dry-run")
    if args.alias is not None and not args.register:
        raise UserError("--alias needs --register NAME")
    if args.folds < 0 or args.folds == 1:
        raise UserError(f"--folds must be 0 (skip) or >= 2, got {args.folds}")
    if args.register:
        from routerzoo.zoo.registry_ops import check_alias, check_model_name, check_tracking_uri

        check_model_name(args.register, "--register")
        if args.alias is not None:
            check_alias(args.alias, "--alias")
        check_tracking_uri(args.tracking_uri)
    if args.out:
        dest = Path(args.out)
        check_output_dir(dest, overwrite=args.overwrite, what="router artifact")
        return dest
    if args.overwrite:
        if is_uri(args.router):
            raise UserError(f"--overwrite without --out replaces a directory; {args.router} is a URI (give --out DIR)")
        return Path(args.router)
    if not (args.register or args.dry_run):
        raise UserError("nothing would be written: give --out DIR, --overwrite (update ROUTER in place), "
                        "--register NAME, or --dry-run to only report")
    return None


def run(args) -> int:
    """The ``calibrate`` command."""
    import sys
    import tempfile

    from routerzoo.data.dataset import load_dataset
    from routerzoo.routers import load_router

    target = parse_target(args)
    dest = _check_destination(args)
    if args.json_out and Path(args.json_out).is_dir():
        raise UserError(f"--json {args.json_out} is a directory; give a file name")
    router = load_router(args.router)
    dataset = load_dataset(args.data)
    result = calibrate(router, dataset, target, args.split, None if args.test_split == "none" else args.test_split,
                       allow_miss=args.allow_miss, folds=args.folds)
    cal = result.calibration
    print(f"calibrated cost_weight λ = {result.cost_weight:.6g} on {dataset.name}[{cal.split}] ({cal.n_prompts} prompts) "
          f"for {target.describe()}: realised {_fmt(target, cal.figure(target))} "
          f"(mean cost ${cal.cost:.6g}, quality {cal.quality:.4f}); reachable at any λ: "
          f"{_fmt(target, result.reachable[0])} to {_fmt(target, result.reachable[1])}")
    lo, hi = result.useful_range
    print(f"useful cost weights: λ from {lo:.6g} (below: every prompt as at λ = 0) to {hi:.6g} (from there: every "
          "prompt to its cheapest predicted model)")
    if result.cv is not None:
        cv = result.cv
        print(f"cross-validated ({cv['folds']} folds, λ chosen without each fold): realised {_fmt(target, cv['figure'])}"
              f"{_ci(target, cv['ci95'])}{_rel(target, cv['figure'])}")
    if result.test is not None:
        t = result.test
        got = t.figure(target)
        print(f"{dataset.name}[{t.split}] ({t.n_prompts} prompts): target {_fmt(target, target.value)}, "
              f"realised {_fmt(target, got)}{_ci(target, result.test_ci)}{_rel(target, got)}; "
              f"mean cost ${t.cost:.6g}, quality {t.quality:.4f}")
    if result.missed:
        print(f"routerzoo: warning: {target.describe()} is out of reach on {dataset.name}[{cal.split}]; writing the "
              f"nearest point (--allow-miss)", file=sys.stderr)
    elif target.metric == "cost" and target.value > result.reachable[1]:
        print(f"note: the router spends at most {_fmt(target, result.reachable[1])} per prompt (λ = 0: every prompt to "
              "its best predicted model), below the target")
    if dest is not None or args.register:
        apply_calibration(router, result, dataset)
    if dest is not None:
        router.save(dest, overwrite=args.overwrite)
        print(f"wrote {dest} (default policy: argmax, cost_weight {result.cost_weight:.6g})")
    if args.register:
        from routerzoo.zoo.registry_ops import register, registry_errors
        from routerzoo.zoo.tracking import resolve_tracking_uri

        with tempfile.TemporaryDirectory(prefix="routerzoo-calibrate-") as tmp, \
                registry_errors("--register", resolve_tracking_uri(args.tracking_uri)):
            source = dest if dest is not None else router.save(Path(tmp) / "router")
            version = register(str(source), args.register, alias=args.alias, tracking_uri=args.tracking_uri)
        print(f"registered {args.register}/{version}" + (f" as @{args.alias}" if args.alias else ""))
    if dest is None and not args.register:
        print("nothing written (--dry-run)")
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(result.to_dict(), indent=2) + "\n")
    return 0
