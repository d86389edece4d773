"""``routerzoo calibrate-cascade``: per-stage cascade thresholds for a target mean cost or quality.

A cascade's cost is whatever it actually calls, so the thresholds are chosen by *running* it
through the offline client on the calibration split (every call counted, rejected answers
included), never from predicted costs:

1. one shared threshold swept over the scorer's score quantiles (:func:`threshold_grid`): the best
   point meeting the target (cost: the highest quality at mean cost <= target; quality: the lowest
   cost at quality >= target). If none meets it the target is refused in one line, or with
   ``--allow-miss`` the point closest to it is written with a warning;
2. coordinate refinement: each stage's threshold in turn is moved over the same grid, keeping a
   move when the objective improves and the target still holds (two passes).

A quality target outside [0, 1] is refused, and so is a scorer whose inputs (the registry's
``reads``) the calibration table lacks for a scored stage.

The result is one self-contained, versioned cascade artifact (``--out DIR``: chain, thresholds,
the deferral scorer embedded, the chain's prices, and the calibration record as lineage), loaded
like every artifact (:func:`routerzoo.routers.core.loader.load`), served, registered and evaluated by
itself; with what it realises on the calibration split and on the test split next to the target.
``--out FILE.yaml`` still writes the old serve-config section that points at its scorer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from routerzoo.data.fsutil import atomic_write_text
from routerzoo.errors import UserError
from routerzoo.evaluation.sequential import _stage_scores, run_offline, threshold_grid
from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.routers.registry import kinds
from routerzoo.training.calibrate import Target, TargetMissed
from routerzoo.training.train_deferral import check_reads


@dataclass
class CascadeRealised:
    """What a cascade realises on one split: mean cost (every call), mean quality, calls per prompt."""

    split: str
    n_prompts: int
    cost: float
    quality: float
    calls_per_prompt: float

    def figure(self, target: Target) -> float:
        return self.cost if target.metric == "cost" else self.quality


@dataclass
class CascadeCalibration:
    """The calibrated thresholds and what they realise."""

    target: Target
    chain: list[str]
    thresholds: list[float]
    calibration: CascadeRealised
    test: CascadeRealised | None

    def to_dict(self) -> dict:
        out = {"target": self.target.to_dict(), "chain": self.chain, "thresholds": self.thresholds,
               "calibration": asdict(self.calibration), "test": asdict(self.test) if self.test else None}
        if self.test is not None:
            got = self.test.figure(self.target)
            out["test_figure"] = got
            out["test_relative_error"] = (got - self.target.value) / self.target.value if self.target.value else None
        return out


def realise(scorer, chain: list[str], thresholds: list[float], matrix, split: str) -> CascadeRealised:
    """Run the cascade on ``matrix`` (offline) and average over the prompts it could score."""
    policy = CascadePolicy(CascadeConfig(chain=list(chain), thresholds=list(thresholds)), scorer)
    r = run_offline(policy, matrix)
    k = r["known"]
    if not k.any():
        raise UserError(f"no prompt of split {split!r} has an outcome for every model the cascade calls")
    return CascadeRealised(split, int(k.sum()), float(r["cost"][k].mean()), float(r["quality"][k].mean()),
                           float(r["n_calls"][k].mean()))


def _meets(target: Target, r: CascadeRealised) -> bool:
    return r.cost <= target.value if target.metric == "cost" else r.quality >= target.value


def _better(target: Target, a: CascadeRealised, b: CascadeRealised | None) -> bool:
    """Is ``a`` a better feasible point than ``b``? (cost target: higher quality; quality target: lower cost)."""
    if b is None:
        return True
    if target.metric == "cost":
        return (a.quality, -a.cost) > (b.quality, -b.cost)
    return (-a.cost, a.quality) > (-b.cost, b.quality)


def calibrate_cascade(scorer, chain: list[str], matrix, target: Target, *, test_matrix=None,
                      split: str = "val", n_points: int = 24, passes: int = 2,
                      allow_miss: bool = False) -> CascadeCalibration:
    """Thresholds per stage meeting ``target`` on ``matrix`` (see the module docstring).

    Args:
        scorer: the deferral scorer.
        chain: models in calling order (at least two).
        matrix: the calibration split's :class:`~routerzoo.data.matrix.OutcomeMatrix`.
        target: ``Target("cost", usd)`` or ``Target("quality", q)``.
        test_matrix: the test split's matrix, to report the realised figure on; None to skip.
        split: the calibration split's name (for the report).
        n_points: thresholds tried per stage.
        passes: coordinate-refinement passes.
        allow_miss: when no threshold meets the target, keep the closest point instead of raising
            :class:`~routerzoo.training.calibrate.TargetMissed`.
    """
    if target.metric not in ("cost", "quality"):
        raise UserError(f"a cascade calibrates to a cost or a quality target, not {target.metric!r}")
    chain = CascadeConfig(chain=list(chain), thresholds=0.0).chain
    if len(chain) < 2:
        raise UserError("a cascade with one model has no threshold to calibrate; give at least two")
    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise UserError(f"chain model(s) {missing} are not in the dataset; its models: {list(matrix.models)}")
    if target.metric == "quality" and not 0.0 <= target.value <= 1.0:
        raise UserError(f"--target-quality {target.value:g}: quality is in [0, 1]")
    if getattr(scorer, "kind", None) in kinds("deferral"):
        for model in chain[:-1]:  # the stages whose answers the scorer judges
            check_reads(scorer.kind, matrix, model, where=f"split {split!r}")
    grid = threshold_grid(_stage_scores(scorer, chain, matrix), n_points).tolist()
    stages = len(chain) - 1
    cache: dict[tuple, CascadeRealised] = {}

    def run(th: list[float]) -> CascadeRealised:
        key = tuple(th)
        if key not in cache:
            cache[key] = realise(scorer, chain, th, matrix, split)
        return cache[key]

    best_th, best, closest_th, gap = None, None, None, math.inf
    for t in grid:
        r = run([t] * stages)
        miss = abs(r.figure(target) - target.value)
        if miss < gap:
            closest_th, gap = [t] * stages, miss
        if _meets(target, r) and _better(target, r, best):
            best_th, best = [t] * stages, r
    if best_th is None:  # nothing meets the target: refused, or the closest point where the caller allows it
        if not allow_miss:
            figs = [r.figure(target) for r in cache.values()]
            what = f"mean cost is at least ${min(figs):.6g}" if target.metric == "cost" else f"mean quality is at most {max(figs):.4f}"
            raise TargetMissed(f"--target-{target.metric} {target.value:g}: out of reach; on split {split!r} the cascade's "
                               f"{what} at any threshold; give a reachable target, or --allow-miss to write the closest point")
        th = closest_th
    else:
        th = list(best_th)
        for _ in range(passes if stages > 1 else 0):
            moved = False
            for k in range(stages):
                for t in grid:
                    cand = list(th)
                    cand[k] = t
                    r = run(cand)
                    if _meets(target, r) and _better(target, r, best):
                        th, best, moved = cand, r, True
            if not moved:
                break
    cal = run(th)
    test = realise(scorer, chain, th, test_matrix, "test") if test_matrix is not None else None
    return CascadeCalibration(target, chain, [float(t) for t in th], cal, test)


#: ``--out`` names with these suffixes get the old serve-config section instead of an artifact
_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def cascade_artifact(scorer, res: CascadeCalibration, dataset) -> CascadePolicy:
    """The calibrated cascade as a policy carrying its prices and calibration record (save it with ``.save``)."""
    from routerzoo import __version__

    policy = CascadePolicy(CascadeConfig(chain=list(res.chain), thresholds=list(res.thresholds)), scorer)
    prices = (dataset.manifest.get("prices") or {}) if dataset is not None else {}
    policy.prices = {m: {"input": float(p["input"]), "output": float(p["output"])} for m, p in prices.items()
                     if m in res.chain and isinstance(p, dict) and p.get("input") is not None and p.get("output") is not None}
    policy.lineage = {"dataset": getattr(dataset, "name", None),
                      "dataset_sha256": (dataset.manifest.get("sha256") if dataset is not None else None),
                      "calibration": res.to_dict(), "routerzoo_version": __version__}
    metrics = {"calibration": asdict(res.calibration)}
    if res.test is not None:
        metrics["test"] = asdict(res.test)
    policy.lineage["metrics"] = metrics
    return policy


# -- command line ----------------------------------------------------------------------------------
def _write(path: Path, text: str, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    atomic_write_text(path, text)


def run(args) -> int:
    """The ``calibrate-cascade`` command."""
    import yaml

    from routerzoo.data.dataset import load_dataset
    from routerzoo.routers.deferral.artifact import resolve_deferral

    value = args.target_cost if args.target_cost is not None else args.target_quality
    if args.target_cost is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"--target-cost must be a positive number of USD, got {value}")
    if args.target_quality is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UserError(f"--target-quality must be a quality in [0, 1], got {value}")
    target = Target("cost" if args.target_cost is not None else "quality", float(value))
    for path in (args.out, args.json_out):
        if path and Path(path).exists() and not args.overwrite:
            raise UserError(f"{path} exists; pass --overwrite to replace it")
    chain = [m.strip() for m in args.chain.split(",") if m.strip()]
    scorer = resolve_deferral(args.scorer)
    ds = load_dataset(args.data)
    cal_m = ds.outcome_matrix(args.split)
    test_m = None if args.test_split == "none" else ds.outcome_matrix(args.test_split)
    if len(cal_m) == 0:
        raise UserError(f"{args.data}: split {args.split!r} has no prompts")
    res = calibrate_cascade(scorer, chain, cal_m, target, test_matrix=test_m if test_m is not None and len(test_m) else None,
                            split=args.split, allow_miss=args.allow_miss)
    c = res.calibration
    fmt = (lambda x: f"${x:.6g}") if target.metric == "cost" else (lambda x: f"{x:.4f}")
    print(f"thresholds {[round(t, 6) for t in res.thresholds]} for {' -> '.join(chain)} on {ds.name}[{c.split}] "
          f"({c.n_prompts} prompts), {target.describe()}: realised {fmt(c.figure(target))} "
          f"(mean cost ${c.cost:.6g}, quality {c.quality:.4f}, {c.calls_per_prompt:.2f} calls/prompt)")
    if res.test is not None:
        t = res.test
        got = t.figure(target)
        rel = f" ({100 * (got - target.value) / target.value:+.1f}% vs target)" if target.value else ""
        print(f"{ds.name}[{t.split}] ({t.n_prompts} prompts): target {fmt(target.value)}, realised {fmt(got)}{rel}; "
              f"mean cost ${t.cost:.6g}, quality {t.quality:.4f}, {t.calls_per_prompt:.2f} calls/prompt")
    if not _meets(target, c):
        import sys

        print(f"routerzoo: warning: {target.describe()} is out of reach on {ds.name}[{c.split}]; writing the closest "
              "point (--allow-miss)", file=sys.stderr)
    if args.out and Path(args.out).suffix.lower() in _SPEC_SUFFIXES:
        section = {"mode": "cascade", "cascade": {"chain": chain, "thresholds": res.thresholds, "scorer": args.scorer,
                                                  "scorer_config": {} if Path(args.scorer).is_dir() else
                                                  asdict(scorer.config)}}
        _write(Path(args.out), "# from routerzoo calibrate-cascade; merge into a serve config\n"
               + yaml.safe_dump(section, sort_keys=False), args.overwrite)
        print(f"wrote {args.out} (note: this spec points at its scorer; give --out a folder for a self-contained, "
              "versioned cascade artifact)")
    elif args.out:
        policy = cascade_artifact(scorer, res, ds)
        policy.save(args.out, overwrite=args.overwrite)
        print(f"wrote cascade artifact {args.out} (serve it with `mode: cascade` and `cascade.policy: {args.out}` or a "
              "models:/ URI after `routerzoo zoo register`)")
    if args.json_out:
        _write(Path(args.json_out), json.dumps(res.to_dict(), indent=2) + "\n", args.overwrite)
    return 0


__all__ = ["calibrate_cascade", "CascadeCalibration", "CascadeRealised", "realise"]
