"""The contextual bandit's regret on a replay of a benchmark's training split (random order).

Only the chosen model's outcome is revealed at each step (:func:`routerzoo.evaluation.replay.replay_regret`).
Prints, for LinUCB and Thompson sampling, cumulative regret against the best fixed model (in
hindsight) and against the oracle at a few checkpoints, the mean reward, and the best fixed model's
and the oracle's mean reward; ``--plot`` writes the regret curves (PNG).

    python bench/bandit_replay.py [--data DIR] [--split train] [--alpha 0.5] [--cost-weight 0] [--plot OUT.png]

Without --data the bundled MMLU-Pro sample is imported to a temp dir. Set ROUTERZOO_CACHE to reuse
embeddings between runs.
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



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset directory (default: the bundled MMLU-Pro sample)")
    ap.add_argument("--split", default="train", help="split to replay (default train)")
    ap.add_argument("--alpha", type=float, default=0.1, help="exploration width")
    ap.add_argument("--cost-weight", type=float, default=0.0, help="λ: rewards are quality - λ·cost")
    ap.add_argument("--dims", type=int, default=32, help="principal components the bandit reads (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", help="write the regret curves here (PNG)")
    args = ap.parse_args(argv)

    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.replay import replay_regret
    from routerzoo.routers.core.cost import CostModel
    from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER, Encoder
    from routerzoo.routers.kinds.linucb import LinUCBConfig, LinUCBRouter, pca

    with tempfile.TemporaryDirectory(prefix="rz-bench-bandit-") as tmp:
        if args.data:
            data = Path(args.data)
        else:
            import importlib.util

            spec = importlib.util.spec_from_file_location("bench_assignment", Path(__file__).with_name("assignment.py"))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            data = mod.sample_dataset(Path(tmp))
        ds = load_dataset(data)
        mat = ds.outcome_matrix(args.split).complete()
        t0 = time.perf_counter()
        emb = Encoder(DEFAULT_ENCODER, show_progress=False).encode(list(mat.prompts))
        print(f"alpha {args.alpha}, dims {args.dims}, cost weight {args.cost_weight}")
        print(f"{ds.name}[{args.split}]: {len(mat)} prompts with every model's outcome, {len(mat.models)} models; "
              f"encoded in {time.perf_counter() - t0:.1f} s")
        reward = mat.quality - args.cost_weight * mat.cost
        print(f"mean reward: best fixed model {reward.mean(axis=0).max():.4f} "
              f"({mat.models[int(reward.mean(axis=0).argmax())]}), oracle {reward.max(axis=1).mean():.4f}")
        # PCA of the replayed prompts' embeddings: unsupervised (no outcome is read), as fit_linucb does
        center, projection = pca(emb, args.dims)
        curves = {}
        for exploration in ("ucb", "thompson"):
            bandit = LinUCBRouter(LinUCBConfig(exploration=exploration, alpha=args.alpha), models=mat.models,
                                  cost_model=CostModel.fit(mat.models, mat.cost))
            bandit.init_state(emb.shape[1], float(mat.quality.mean()), center, projection)
            t0 = time.perf_counter()
            res = replay_regret(bandit, emb, mat.quality, mat.cost, args.cost_weight, seed=args.seed)
            secs = time.perf_counter() - t0
            n = res["steps"]
            marks = [int(n * f) - 1 for f in (0.1, 0.25, 0.5, 1.0)]
            fixed = ", ".join(f"{m + 1}: {res['curve_best_fixed'][m]:+.1f}" for m in marks)
            oracle = ", ".join(f"{m + 1}: {res['curve_oracle'][m]:.1f}" for m in marks)
            half = n // 2
            late = -(res["curve_best_fixed"][-1] - res["curve_best_fixed"][half - 1]) / (n - half)
            print(f"{exploration:>8}: mean reward {res['reward']:.4f} in {secs:.1f} s; cumulative regret vs best fixed "
                  f"[{fixed}]; vs oracle [{oracle}]; second half beats the best fixed model by {late:+.4f}/prompt")
            curves[exploration] = res
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
            for name, res in curves.items():
                ax[0].plot(res["curve_best_fixed"], label=name)
                ax[1].plot(res["curve_oracle"], label=name)
            ax[0].set_title("cumulative regret vs best fixed model")
            ax[1].set_title("cumulative regret vs oracle")
            for a in ax:
                a.set_xlabel("prompts replayed")
                a.legend()
            fig.tight_layout()
            fig.savefig(args.plot, dpi=120)
            print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
