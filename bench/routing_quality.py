"""Routing quality of every registered router on real datasets, with bootstrap CIs and ratios to kNN.

For each dataset (imported beforehand with ``routerzoo data import``, fixed split and seed 0), every
router is trained on the train split (the validation split only for early stopping / model
selection, as ``routerzoo train`` does) and evaluated on the test split:

* AIQ and the share of the zero-router → oracle gap closed, with bootstrap 95% intervals
  (``evaluate_router(..., bootstrap=B)``, prompts resampled);
* the validation split's gap closed (what a default is chosen on: tuning never looks at test);
* K-fold cross-validation on train+val (``--cv-folds``, default 5; test untouched): CV mean ± sd of
  gap closed, the number a default can honestly be chosen on;
* ``auto`` (``routerzoo train --router auto``, ``--auto-time-limit`` seconds): CV over candidate
  kinds, a greedy ensemble of them (or the best single one); its row names what it chose;
* a closing table in README's form: kNN, the best other kind by CV mean, and auto;
* training seconds (fit, including any encoding not already cached, and the CV);
* each router's gap closed as a ratio to kNN's in the same run, and its difference from kNN's on the
  same test prompts with a paired bootstrap 95% interval;
* with ``--strong/--weak`` on two-model datasets (the RouteLLM caches): APGR, CPT(50%), CPT(80%).

    python bench/routing_quality.py --data mmlu-pro=DIR routellm=DIR routerarena=DIR \
        [--routers knn mlp mf ...] [--bootstrap 200] [--json OUT.json]

Set ROUTERZOO_CACHE to reuse embeddings between runs (encoding full MMLU-Pro on 2 CPU cores takes
minutes). RouteLLM strong/weak default to gpt-4-1106-preview / Mixtral-8x7B when both are candidates.
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

DEFAULT_ROUTERS = ["knn", "mlp", "mf", "cluster", "sw-elo", "elo", "stack", "best-single", "random", "auto"]
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def run_one(kind: str, data: Path, workdir: Path, bootstrap: int, strong_weak: tuple | None, seed: int = 0,
            cv_folds: int = 5, auto_time_limit: float = 300.0, candidates: list[str] | None = None) -> dict:
    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.training.auto import AUTO, AutoConfig
    from routerzoo.training.cv import CVConfig
    from routerzoo.training.train import TrackingConfig, train_router

    config = None
    if kind == AUTO:
        config = AutoConfig(time_limit=auto_time_limit, **({"candidates": candidates} if candidates else {}))
    t0 = time.perf_counter()
    result = train_router(kind, config, data, workdir / kind, tracking=TrackingConfig(enabled=False), progress=False,
                          seed=seed, cv=CVConfig(folds=cv_folds, default_policy="none"))
    train_s = time.perf_counter() - t0
    dataset = load_dataset(data)
    strong, weak = strong_weak or (None, None)
    report = evaluate_router(result.router, dataset, "test", strong=strong, weak=weak, bootstrap=bootstrap)
    val = result.reports.get("val", {})
    row = {
        "router": kind,
        "aiq": report["aiq"]["router"],
        "aiq_ci": report.get("bootstrap", {}).get("aiq_router"),
        "gap_closed": report["gap_closed"],
        "gap_ci": report.get("bootstrap", {}).get("gap_closed"),
        "val_gap_closed": val.get("gap_closed"),
        "cv_gap_closed_mean": result.fit_metrics.get("cv_gap_closed_mean"),
        "cv_gap_closed_sd": result.fit_metrics.get("cv_gap_closed_sd"),
        "chosen": (result.auto or {}).get("chosen"),
        "auto_table": (result.auto or {}).get("candidates"),
        "zero_aiq": report["aiq"]["zero_router"],
        "oracle_aiq": report["aiq"]["oracle"],
        "fit_s": result.fit_metrics.get("fit_s"),
        "train_s": train_s,
        "n_test": report["n_prompts"],
        "config": report["router"]["config"],
    }
    for key in ("apgr", "apgr_routellm", "cpt50", "cpt80"):
        if report.get(key) is not None:
            row[key] = report[key]
    row["_router"] = result.router  # for the paired comparison; dropped before JSON
    return row


def paired_gap_diff(router_a, router_b, data: Path, bootstrap: int, seed: int = 0) -> dict:
    """Gap closed of A minus B on the same test prompts, with a paired bootstrap 95% interval
    (prompts resampled once for both routers), and the share of resamples where A is ahead."""
    import numpy as np

    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.report import evaluate_predictions
    from routerzoo.evaluation.runner import evaluation_matrix

    dataset = load_dataset(data)
    matrix, _ = evaluation_matrix(router_a, dataset, "test")
    pa, pb = router_a.predict(matrix.prompts), router_b.predict(matrix.prompts)
    tq, tc = matrix.quality, np.nan_to_num(matrix.cost, nan=0.0)

    def diff(idx):
        ga = evaluate_predictions(pa.quality[idx], pa.cost[idx], tq[idx], tc[idx], matrix.models)["gap_closed"]
        gb = evaluate_predictions(pb.quality[idx], pb.cost[idx], tq[idx], tc[idx], matrix.models)["gap_closed"]
        return np.nan if ga is None or gb is None else ga - gb

    n = len(matrix)
    rng = np.random.default_rng(seed)
    draws = np.array([diff(rng.integers(0, n, n)) for _ in range(bootstrap)])
    draws = draws[np.isfinite(draws)]
    lo, hi = (np.percentile(draws, [2.5, 97.5]).tolist() if draws.size else [None, None])
    return {"diff": diff(np.arange(n)), "ci": [lo, hi], "p_ahead": float(np.mean(draws > 0)) if draws.size else None}


def _f(x, nd=3, pct=False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.{nd}f}"


def table(name: str, rows: list[dict]) -> str:
    knn = next((r for r in rows if r["router"] == "knn"), None)
    lines = [f"### {name} (test n={rows[0]['n_test']}; zero AIQ {rows[0]['zero_aiq']:.4f}, oracle AIQ {rows[0]['oracle_aiq']:.4f})", "",
             "| router | AIQ [95% CI] | gap closed [95% CI] | minus kNN's, paired [95% CI] | CV gap closed (mean ± sd) | val gap closed | ratio to kNN | train s |"
             + (" APGR | CPT(50%) | CPT(80%) |" if any("apgr" in r for r in rows) else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if any("apgr" in r for r in rows) else "")]
    for r in rows:
        ci = r.get("aiq_ci") or [None, None]
        gci = r.get("gap_ci") or [None, None]
        ratio = r["gap_closed"] / knn["gap_closed"] if knn and knn["gap_closed"] and r["gap_closed"] is not None else None
        cv = _f(r.get("cv_gap_closed_mean"), pct=True) + (f" ± {100 * r['cv_gap_closed_sd']:.1f}" if r.get("cv_gap_closed_sd") is not None else "")
        name = r["router"] + (f" → {r['chosen']}" if r.get("chosen") else "")
        vs = r.get("vs_knn")
        paired = (f"{_f(vs['diff'], pct=True)} [{_f(vs['ci'][0], pct=True)}, {_f(vs['ci'][1], pct=True)}]" if vs else "-")
        line = (f"| {name} | {_f(r['aiq'], 4)} [{_f(ci[0], 4)}, {_f(ci[1], 4)}] | {_f(r['gap_closed'], pct=True)} "
                f"[{_f(gci[0], pct=True)}, {_f(gci[1], pct=True)}] | {paired} | {cv} | {_f(r['val_gap_closed'], pct=True)} | "
                f"{_f(ratio, 2)} | {r['train_s']:.1f} |")
        if "apgr" in r:
            line += f" {_f(r.get('apgr'))} | {_f(r.get('cpt50'), pct=True)} | {_f(r.get('cpt80'), pct=True)} |"
        lines.append(line)
    return "\n".join(lines)


def summary_table(results: dict) -> str:
    """README's table: per dataset kNN, the best other kind by CV mean, and auto, with paired CIs vs kNN."""
    lines = ["| dataset (test n) | router | gap closed [95% CI] | minus kNN's, paired [95% CI] | CV gap closed (mean ± sd, 5 folds) | train s |",
             "|---|---|---|---|---|---|"]
    for name, rows in results.items():
        by = {r["router"]: r for r in rows}
        others = [r for r in rows if r["router"] not in ("knn", "auto", "best-single", "random")
                  and r.get("cv_gap_closed_mean") is not None]
        best = max(others, key=lambda r: r["cv_gap_closed_mean"], default=None)
        picked = [(by.get("knn"), "knn"), (best, f"best other kind in CV: {best['router']}" if best else None), (by.get("auto"), None)]
        first = True
        for r, label in picked:
            if r is None:
                continue
            label = label or (r["router"] + (f" → {r['chosen']}" if r.get("chosen") else ""))
            gci = r.get("gap_ci") or [None, None]
            vs = r.get("vs_knn")
            paired = f"{100 * vs['diff']:+.1f} [{100 * vs['ci'][0]:+.1f}, {100 * vs['ci'][1]:+.1f}]" if vs and vs["ci"][0] is not None else ""
            cv = (_f(r.get("cv_gap_closed_mean"), pct=True)
                  + (f" ± {100 * r['cv_gap_closed_sd']:.1f}" if r.get("cv_gap_closed_sd") is not None else ""))
            head = f"{name} ({r['n_test']})" if first else ""
            lines.append(f"| {head} | {label} | {_f(r['gap_closed'], pct=True)} "
                         f"[{_f(gci[0], pct=True)}, {_f(gci[1], pct=True)}] | {paired} | {cv} | {r['train_s']:.0f} |")
            first = False
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, metavar="NAME=DIR", help="datasets to run on")
    ap.add_argument("--routers", nargs="+", default=DEFAULT_ROUTERS, help=f"router kinds (default {DEFAULT_ROUTERS})")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200)")
    ap.add_argument("--json", dest="json_out", help="write every row as JSON here")
    ap.add_argument("--cv-folds", type=int, default=5, help="K-fold CV on train+val for every router (0: off; default 5)")
    ap.add_argument("--auto-time-limit", type=float, default=300.0, help="--auto.time_limit of the auto row (seconds)")
    ap.add_argument("--auto-candidates", nargs="+", help="--auto.candidates of the auto row (default: auto's own)")
    ap.add_argument("--workdir", help="where artifacts go (default: a temporary directory)")
    args = ap.parse_args(argv)

    from routerzoo.data.dataset import load_dataset
    from routerzoo.errors import UserError

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="rz-quality-") as tmp:
        root = Path(args.workdir or tmp)
        for spec in args.data:
            name, _, path = spec.partition("=")
            data = Path(path)
            models = load_dataset(data).models
            sw = (STRONG, WEAK) if STRONG in models and WEAK in models else None
            rows, routers = [], {}
            for kind in args.routers:
                try:
                    row = run_one(kind, data, root / name, args.bootstrap, sw, cv_folds=args.cv_folds,
                                  auto_time_limit=args.auto_time_limit, candidates=args.auto_candidates)
                except UserError as exc:
                    print(f"{name}: {kind} skipped: {exc}", file=sys.stderr)
                    continue
                router = row.pop("_router")
                routers[kind] = router
                if kind != "knn" and "knn" in routers and args.bootstrap:
                    row["vs_knn"] = paired_gap_diff(router, routers["knn"], data, args.bootstrap)
                rows.append(row)
                print(f"{name:<12} {kind:<12} gap {_f(row['gap_closed'], pct=True):>7} "
                      f"[{_f((row['gap_ci'] or [None])[0], pct=True)}, {_f((row['gap_ci'] or [None, None])[1], pct=True)}]  "
                      f"CV {_f(row['cv_gap_closed_mean'], pct=True):>7}  val {_f(row['val_gap_closed'], pct=True):>7}  "
                      f"{row['train_s']:.1f}s" + (f"  chose {row['chosen']}" if row.get("chosen") else ""), file=sys.stderr, flush=True)
            results[name] = rows
            if args.json_out:
                Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    for name, rows in results.items():
        print(table(name, rows))
        print()
    print("README's table (kNN, the best other kind by CV mean, auto):\n")
    print(summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
