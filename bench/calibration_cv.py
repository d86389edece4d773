"""How far `routerzoo calibrate` lands from a cost target on unseen prompts, and whether its
cross-validated estimate says so beforehand: small data, as users have it.

A new user's dataset: 320 prompts × 3 models (the cheapest, a middle one and the dearest of the
bundled MMLU-Pro sample, by mean cost), split as `data import` does by default (val 10%, test
20%). For each split seed a kNN router (defaults) is trained on train and calibrated to a mean
cost halfway (geometrically) between the cheapest model's and what the router spends at λ = 0, on
the validation split alone (~32 prompts) and on train+val. Reported per calibration:

* ``cal``: realised cost on the calibration prompts, relative to the target (in-sample);
* ``cv``: the out-of-fold estimate (5 folds) with its 95% CI, relative to the target;
* ``test``: realised cost on the test split with its 95% CI, relative to the target;
* ``covered``: whether the test figure lies inside the CV interval.

    python bench/calibration_cv.py [--seeds 4] [--prompts 320]   (about 3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def small_outcomes(n_prompts: int):
    """320 prompts × 3 models (cheapest, middle, dearest by mean cost) of the bundled sample, and its prices."""
    from routerzoo.data.importers import import_files
    from routerzoo.demo import sample_dir

    full = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="sample")
    df = full.outcomes
    by_cost = df.groupby("model")["cost"].mean().sort_values()
    models = [by_cost.index[0], by_cost.index[len(by_cost) // 2], by_cost.index[-1]]
    df = df[df["model"].isin(models)]
    complete = df.groupby("prompt_id")["model"].nunique()
    ids = sorted(complete.index[complete == 3])
    keep = set(np.random.default_rng(0).choice(ids, size=n_prompts, replace=False))
    return df[df["prompt_id"].isin(keep)].drop(columns=["split"]), full.manifest["prices"]


def lambda0_cost(router, ds) -> float:
    """Mean true cost on train of every prompt sent to its best predicted model (λ = 0)."""
    from routerzoo.routers.policies.argmax import decide

    m = ds.outcome_matrix("train", models=router.models).complete()
    d = decide(router.predict(m.prompts).quality, router.predict(m.prompts).cost, 0.0)
    return float(m.cost[np.arange(len(d)), d].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=320)
    args = ap.parse_args()

    from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers import load_router
    from routerzoo.training.calibrate import Target, calibrate
    from routerzoo.training.train import TrackingConfig, train_router

    rows = []
    with tempfile.TemporaryDirectory(prefix="routerzoo-bench-cal-") as tmp:
        work = Path(tmp)
        df, prices = small_outcomes(args.prompts)
        cheapest = float(df.groupby("model")["cost"].mean().min())
        for seed in range(args.seeds):
            ds = make_dataset(df, name=f"small-{seed}", prices=prices, split=SplitSpec(seed=seed))
            path = save_dataset(ds, work / f"small-{seed}")
            train_router("knn", None, path, work / f"knn-{seed}", tracking=TrackingConfig(enabled=False), progress=False)
            router, ds = load_router(work / f"knn-{seed}"), load_dataset(path)
            # halfway (geometrically) between the cheapest model and what the router spends at λ = 0
            target = Target("cost", float(np.sqrt(cheapest * lambda0_cost(router, ds))))
            for split in ("val", "train,val"):
                r = calibrate(router, ds, target, split, "test", allow_miss=True)
                rel = lambda x, t=target.value: 100 * (x - t) / t  # noqa: E731
                cv = r.cv or {"figure": np.nan, "ci95": [np.nan, np.nan]}
                test = r.test.cost
                rows.append({"seed": seed, "split": split, "n": r.calibration.n_prompts, "target": target.value,
                             "cal": rel(r.calibration.cost), "cv": rel(cv["figure"]), "cv_lo": rel(cv["ci95"][0]),
                             "cv_hi": rel(cv["ci95"][1]), "test": rel(test), "test_lo": rel(r.test_ci[0]),
                             "test_hi": rel(r.test_ci[1]), "covered": cv["ci95"][0] <= test <= cv["ci95"][1],
                             "missed": r.missed})
    print(f"{'seed':>4} {'calibrated on':<14} {'n':>4}  {'target $':>10}  {'cal':>7}  {'cv [95% CI]':>24}  "
          f"{'test [95% CI]':>24}  covered")
    for r in rows:
        print(f"{r['seed']:>4} {r['split']:<14} {r['n']:>4}  {r['target']:>10.3g}  {r['cal']:>+6.1f}%  "
              f"{r['cv']:>+6.1f}% [{r['cv_lo']:+6.1f}, {r['cv_hi']:+6.1f}]%  "
              f"{r['test']:>+6.1f}% [{r['test_lo']:+6.1f}, {r['test_hi']:+6.1f}]%  {'yes' if r['covered'] else 'no'}"
              + ("  (target missed in-sample)" if r["missed"] else ""))
    for split in ("val", "train,val"):
        sel = [r for r in rows if r["split"] == split]
        print(f"calibrated on {split}: mean |test miss| {np.mean([abs(r['test']) for r in sel]):.1f}%, mean |cal miss| "
              f"{np.mean([abs(r['cal']) for r in sel]):.1f}%, CV interval covers test in {sum(r['covered'] for r in sel)}"
              f"/{len(sel)}, mean CV interval width {np.mean([r['cv_hi'] - r['cv_lo'] for r in sel]):.1f} points")


if __name__ == "__main__":
    main()
