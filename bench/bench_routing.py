"""Routing performance on the bundled MMLU-Pro sample (15 models), CPU.

Prints, each as a ratio against a baseline measured in the same process:
  1. encoding: cold (model forward) vs warm (on-disk cache) prompts/s;
  2. scoring: kNN and MLP prompts/s on precomputed embeddings, against a matrix product of the same
     size (the least any embedding router must do), for batch sizes 1, 32, 1024;
  3. end-to-end route() latency per prompt (encode + score + decide) vs encoding alone;
  4. evaluation: evaluate_predictions (64 λ) and with 200 bootstrap resamples.

    python bench/bench_routing.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def best_of(fn, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs (seconds): the least noisy estimate on a shared machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rz-bench-"))
    os.environ["ROUTERZOO_CACHE"] = str(work / "cache")

    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.demo import sample_dir
    from routerzoo.evaluation.report import evaluate_predictions
    from routerzoo.routers import load_router
    from routerzoo.routers.encoders.encoder import Encoder
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.routers.kinds.mlp import MLPConfig
    from routerzoo.training.train import TrackingConfig, train_router

    ds = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="bench")
    data = save_dataset(ds, work / "data")
    prompts = ds.outcome_matrix().prompts
    print(f"data: {len(prompts)} prompts × {len(ds.models)} models  (torch threads {__import__('torch').get_num_threads()})")

    # 1. encoding, cold vs cached
    cold_enc = Encoder(cache_dir=work / "cache", show_progress=False)
    cold_enc.encode(["warm-up so model load is not timed"])
    t0 = time.perf_counter()
    emb = cold_enc.encode(prompts)
    cold = time.perf_counter() - t0
    warm = best_of(lambda: Encoder(cache_dir=work / "cache", show_progress=False).encode(prompts), 3)
    print("\n1. encoding (all-MiniLM-L6-v2)")
    print(f"   cold   {len(prompts) / cold:10.1f} prompts/s")
    print(f"   cached {len(prompts) / warm:10.1f} prompts/s   ({cold / warm:.0f}x faster than cold)")

    # 2. scoring on embeddings
    off = TrackingConfig(enabled=False)
    routers = {
        "knn": load_router(train_router("knn", KNNConfig(k=20), data, work / "knn", tracking=off, progress=False).router_dir),
        "mlp": load_router(train_router("mlp", MLPConfig(max_epochs=20), data, work / "mlp", tracking=off, progress=False).router_dir),
    }
    ref = np.random.default_rng(0).standard_normal((1024, emb.shape[1]), dtype=np.float32)
    print("\n2. scoring precomputed embeddings (prompts/s; baseline = one (batch × d)·(d × 1024) matmul)")
    print(f"   {'batch':>6} {'baseline':>12} {'knn':>12} {'ratio':>7} {'mlp':>12} {'ratio':>7}")
    for batch in (1, 32, 1024):
        x = emb[:batch]
        base = best_of(lambda x=x: x @ ref.T, 20)
        row = [f"   {batch:>6} {batch / base:>12.0f}"]
        for kind in ("knn", "mlp"):
            t = best_of(lambda x=x, r=routers[kind]: r.predict_embeddings(x), 10)
            row.append(f"{batch / t:>12.0f} {t / base:>6.1f}x")
        print(" ".join(row))

    # 3. end-to-end route() per prompt on never-seen text (every repetition gets new prompts, so
    #    neither the disk nor the in-memory cache can answer)
    model = Encoder(cache_dir="", show_progress=False)._load_model()
    counter = iter(range(10**9))

    def unseen(n: int = 16) -> list[str]:
        tag = next(counter)
        return [f"{p} (variant {tag}-{i})" for i, p in enumerate(prompts[:n])]

    def fresh_encoder() -> Encoder:
        enc = Encoder(cache_dir="", show_progress=False)
        enc._backend = model  # share the loaded weights; loading is not what we time
        return enc

    enc = fresh_encoder()
    t_enc = best_of(lambda: [enc.encode([p]) for p in unseen()], 3) / 16
    print("\n3. route() one prompt at a time, text never seen before (ms/prompt)")
    print(f"   encode only {t_enc * 1e3:8.2f}")
    for kind, router in routers.items():
        router.set_encoder(fresh_encoder())
        t = best_of(lambda r=router: [r.route([p], cost_weight=100.0) for p in unseen()], 3) / 16
        print(f"   {kind:<11} {t * 1e3:8.2f}   ({t / t_enc:.2f}x encode-only)")

    # 4. evaluation
    mat = ds.outcome_matrix().complete()
    pred = routers["knn"].predict_embeddings(Encoder(cache_dir=work / "cache", show_progress=False).encode(mat.prompts))
    t_eval = best_of(lambda: evaluate_predictions(pred.quality, pred.cost, mat.quality, mat.cost, mat.models), 3)
    t_boot = best_of(lambda: evaluate_predictions(pred.quality, pred.cost, mat.quality, mat.cost, mat.models, bootstrap=200), 1)
    print(f"\n4. evaluate_predictions on {len(mat)} × {len(mat.models)}: {t_eval * 1e3:.0f} ms; "
          f"with 200 bootstrap resamples {t_boot * 1e3:.0f} ms ({t_boot / t_eval:.1f}x)")


    # 5. cold start of a serving process: import + load + first route, in a fresh interpreter,
    #    against the same process importing sentence-transformers (the path routerzoo 0.1 took)
    import subprocess
    import sys

    def fresh(code: str) -> float:
        out = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"],
                             capture_output=True, text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        return float(out.stdout.strip().splitlines()[-1])

    router_dir = work / "knn"
    ours = min(fresh(f"from routerzoo.routers import load_router; load_router({str(router_dir)!r}).route(['What is 2+2?'])") for _ in range(2))
    st = min(fresh("import sentence_transformers") for _ in range(2))
    print(f"\n5. cold start (fresh process): import + load kNN + first route {ours:.2f} s; "
          f"importing sentence-transformers alone {st:.2f} s ({ours / st:.2f}x)")


if __name__ == "__main__":
    main()
