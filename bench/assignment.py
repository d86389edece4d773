"""Budget-constrained batch assignment vs λ-argmax, on real outcomes: quality at equal spend, spend vs budget.

A router is trained on the train split; the test split is one batch. Budgets are 25 / 50 / 75% of
what the best single model (best mean training quality) costs on that batch. For each budget:

* **assignment**: :class:`AssignmentPolicy` maximises total predicted quality with total predicted
  cost <= budget; we report the realised (true) quality and cost of its choices and realised spend
  as a share of the budget;
* **λ-argmax at the same predicted spend**: the largest-quality λ whose predicted total cost is
  within the same budget (bisection on λ): the fair per-prompt competitor with the same information;
* **λ-argmax at the same realised spend**: the λ whose realised total cost is closest to (and not
  above) the assignment's realised cost: quality at equal money actually spent.

Optionally also a capacity cap (``--cap-best SHARE``: the best single model takes at most that
share) and solve time for batches of ``--sizes`` prompts (test prompts tiled), next to the time
to score the same batch with the router.

    python bench/assignment.py [--data DIR] [--router knn] [--sizes 1000 10000] [--cap-best 0.2]

Without --data the bundled MMLU-Pro sample (15 models × 1,501 questions) is imported to a temp dir.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def sample_dataset(workdir: Path) -> Path:
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.demo import sample_dir

    ds = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample",
                      split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True))
    return save_dataset(ds, workdir / "sample")


def argmax_choice(q: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    from routerzoo.routers.policies.argmax import decide

    return decide(q, c, lam)


def lam_for(metric, target: float, hi: float = 1e9) -> float:
    """Smallest λ in [0, hi] (log bisection) with ``metric(λ) <= target`` (metric non-increasing in λ)."""
    if metric(0.0) <= target:
        return 0.0
    lo_l, hi_l = -6.0, np.log10(hi)
    for _ in range(60):
        mid = (lo_l + hi_l) / 2
        if metric(10**mid) <= target:
            hi_l = mid
        else:
            lo_l = mid
    return 10**hi_l


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset directory (default: the bundled MMLU-Pro sample)")
    ap.add_argument("--router", default="knn", help="router kind to train (default knn)")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                    help="budgets as shares of the best single model's cost on the batch")
    ap.add_argument("--cap-best", type=float, default=0.2, help="capacity share for the best single model (0: skip)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000], help="batch sizes to time the solver on")
    args = ap.parse_args(argv)

    from routerzoo.data.dataset import load_dataset
    from routerzoo.routers.core.prediction import Prediction
    from routerzoo.routers.policies.assignment import AssignmentConfig, AssignmentPolicy
    from routerzoo.training.train import TrackingConfig, train_router

    with tempfile.TemporaryDirectory(prefix="rz-bench-assign-") as tmp:
        data = Path(args.data) if args.data else sample_dataset(Path(tmp))
        t0 = time.perf_counter()
        result = train_router(args.router, None, data, Path(tmp) / "router", tracking=TrackingConfig(enabled=False),
                              progress=False)
        router = result.router
        print(f"{args.router} trained on {data} in {time.perf_counter() - t0:.1f} s")
        ds = load_dataset(data)
        test = ds.outcome_matrix("test", router.models).complete()
        train = ds.outcome_matrix("train", router.models)
        prompts = list(test.prompts)
        n = len(prompts)
        t0 = time.perf_counter()
        pred = router.predict(prompts)
        score_s = time.perf_counter() - t0
        tq, tc = test.quality, test.cost
        rows = np.arange(n)

        def realised(choice):
            return float(tq[rows, choice].mean()), float(tc[rows, choice].sum())

        def assign(budget, capacity=None):
            """The policy `routerzoo assign` runs, on the predictions already made (solve time only)."""
            policy = AssignmentPolicy(AssignmentConfig(budget=budget, capacity=capacity, time_limit_s=120))
            return policy.decide(Prediction(pred.quality, pred.cost), router.models)

        best = int(np.nanargmax(np.nanmean(train.quality, axis=0)))
        best_cost = float(tc[:, best].sum())
        print(f"test batch: {n} prompts x {len(router.models)} models; best single model {router.models[best]}: "
              f"quality {tq[:, best].mean():.4f}, cost ${best_cost:.4f}; oracle quality {tq.max(axis=1).mean():.4f}")
        print(f"scoring the batch: {score_s:.2f} s")
        header = (f"{'budget':>8} {'$budget':>9} | {'assign q':>8} {'real $':>8} {'real/bud':>8} {'pred/bud':>8} {'solve s':>7} | "
                  f"{'argmax q@pred$':>14} {'real $':>8} | {'argmax q@real$':>14} {'real $':>8} | {'Δq real':>7}")
        print(header)
        for share in args.budgets:
            budget = share * best_cost
            t0 = time.perf_counter()
            choice = assign(budget)
            solve_s = time.perf_counter() - t0
            aq, ac = realised(choice)
            pred_spend = float(pred.cost[rows, choice].sum())
            lam_p = lam_for(lambda lam: float(pred.cost[rows, argmax_choice(pred.quality, pred.cost, lam)].sum()), budget)
            gq_p, gc_p = realised(argmax_choice(pred.quality, pred.cost, lam_p))
            lam_r = lam_for(lambda lam: realised(argmax_choice(pred.quality, pred.cost, lam))[1], ac)
            gq_r, gc_r = realised(argmax_choice(pred.quality, pred.cost, lam_r))
            print(f"{share:>8.0%} {budget:>9.4f} | {aq:>8.4f} {ac:>8.4f} {ac / budget:>8.3f} {pred_spend / budget:>8.3f} "
                  f"{solve_s:>7.2f} | {gq_p:>14.4f} {gc_p:>8.4f} | {gq_r:>14.4f} {gc_r:>8.4f} | {aq - gq_r:>+7.4f}")
        if args.cap_best > 0:
            budget = 0.5 * best_cost
            cap = {router.models[best]: args.cap_best}
            choice = assign(budget, cap)
            aq, ac = realised(choice)
            share_best = float((choice == best).mean())
            print(f"50% budget + {router.models[best]} capped at {args.cap_best:.0%}: quality {aq:.4f}, realised "
                  f"${ac:.4f} ({ac / budget:.3f} of budget), its share {share_best:.3f}")
        for size in args.sizes:
            reps = int(np.ceil(size / n))
            q = np.tile(pred.quality, (reps, 1))[:size]
            c = np.tile(pred.cost, (reps, 1))[:size]
            budget = 0.5 * float(c[:, best].sum())
            policy = AssignmentPolicy(AssignmentConfig(budget=budget, time_limit_s=120))
            t0 = time.perf_counter()
            policy.decide(Prediction(q, c), router.models)
            solve_s = time.perf_counter() - t0
            per_prompt_score = score_s / n
            print(f"batch {size:>6}: solve {solve_s:.2f} s at a 50% budget; scoring the same batch ~{per_prompt_score * size:.2f} s "
                  f"(ratio {solve_s / (per_prompt_score * size):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
