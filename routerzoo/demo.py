"""``routerzoo demo``: the whole spine on the bundled MMLU-Pro sample, on embedded defaults.

import the sample → train kNN, MLP and baselines (logged to MLflow) → evaluate on the held-out
test split → print a table → write reports (JSON) and a cost-quality plot (PNG).
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

DEMO_ROUTERS = ("knn", "mlp", "best-single", "random")


def sample_dir() -> Path:
    """The bundled MMLU-Pro sample (15 models × 1,501 questions, Apache-2.0)."""
    return Path(str(resources.files("routerzoo") / "resources" / "sample" / "mmlu-pro"))


def run_demo(workdir: Path, routers: tuple[str, ...] = DEMO_ROUTERS, progress: bool | None = None) -> dict:
    """Run the demo in ``workdir``; returns {router kind: evaluation report}."""
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.evaluation.plot import plot_reports
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.routers import load_router
    from routerzoo.training.registry import get_trainer
    from routerzoo.training.train import TrackingConfig, train_router

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workdir / 'mlflow.db'}"
    t_start = time.perf_counter()

    print(f"[1/4] importing the bundled MMLU-Pro sample from {sample_dir()}")
    data_dir = workdir / "data" / "mmlu-pro-sample"
    dataset = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample",
                           split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True))
    save_dataset(dataset, data_dir)
    counts = dataset.manifest["counts"]
    print(f"      {counts['prompts']} prompts × {counts['models']} models, splits {counts['splits']}")

    reports: dict = {}
    for i, kind in enumerate(routers, 1):
        print(f"[2/4] training {kind} ({i}/{len(routers)})")
        config_cls, _ = get_trainer(kind).load()
        result = train_router(
            kind, config_cls(), data_dir, workdir / "routers" / kind,
            tracking=TrackingConfig(tracking_uri=tracking_uri, experiment="routerzoo-demo", run_name=f"demo-{kind}"),
            progress=progress,
        )
        print(f"      {result.router_dir}  (MLflow run {result.run_id}, fit {result.fit_metrics.get('fit_s', 0):.1f}s)")

    print("[3/4] evaluating on the held-out test split")
    reports_dir = workdir / "reports"
    reports_dir.mkdir(exist_ok=True)
    for kind in routers:
        router = load_router(workdir / "routers" / kind)
        report = evaluate_router(router, dataset, "test")
        reports[kind] = report
        (reports_dir / f"{kind}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_path = reports_dir / "cost_quality.png"
    plot_reports({k: reports[k] for k in routers if k in ("knn", "mlp", "random")}, plot_path,
                 title="MMLU-Pro sample, test split: cost vs quality")

    print("[4/4] results (test split, AIQ over the single models' cost range)")
    print(results_table(reports))
    any_report = next(iter(reports.values()))
    best = any_report["best_single"]
    print(f"best single model: {best['name']} (quality {best['quality']:.3f} at ${best['cost']:.5f}/prompt); "
          f"oracle quality {any_report['oracle']['quality']:.3f}")
    print(f"plot:    {plot_path}")
    print(f"reports: {reports_dir}")
    print(f"MLflow:  mlflow ui --backend-store-uri {tracking_uri}")
    print(f"done in {time.perf_counter() - t_start:.0f}s")
    return reports


def results_table(reports: dict) -> str:
    """One row per router: AIQ, zero-router AIQ, oracle AIQ, gap closed, max quality."""
    from routerzoo.training.train import summary_metrics

    header = f"{'router':<12} {'AIQ':>7} {'zero-router':>11} {'oracle':>7} {'gap closed':>10} {'max quality':>11} {'best single':>11}"
    lines = [header, "-" * len(header)]
    for kind, report in reports.items():
        m = summary_metrics(report)
        lines.append(
            f"{kind:<12} {m['aiq']:>7.4f} {m['aiq_zero_router']:>11.4f} {m['aiq_oracle']:>7.4f} "
            f"{m['gap_closed']:>10.1%} {m['max_quality']:>11.4f} {m['best_single_quality']:>11.4f}"
        )
    return "\n".join(lines)
