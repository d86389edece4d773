"""Screenshots of the MLflow UI for docs/zoo.md: a registered router version with its lineage tags,
and its run's cost-quality PNG.

Trains best-single and kNN on the bundled MMLU-Pro sample into a scratch SQLite store, registers
both, promotes the kNN through the gate, starts ``mlflow server`` on loopback and points headless
Chromium at two pages. Needs a Chromium binary (Debian: ``apt-get install chromium-headless-shell``).

    python scripts/zoo_screenshot.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def shoot(browser: str, url: str, out: Path, size: str = "1500,1100") -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size}",
                    "--virtual-time-budget=20000", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=180)
    from PIL import Image  # matplotlib's dependency: a 128-colour PNG is a third of the size in git

    Image.open(out).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default docs/images)")
    args = parser.parse_args()
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("no Chromium found; apt-get install chromium-headless-shell", file=sys.stderr)
        return 2
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.demo import sample_dir
    from routerzoo.routers.kinds.baselines import BestSingleConfig
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router
    from routerzoo.zoo import processes
    from routerzoo.zoo.registry_ops import promote

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="routerzoo-shot-") as tmp:
        work = Path(tmp)
        data = work / "mmlu-pro-sample"
        dataset = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample",
                               split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True))
        save_dataset(dataset, data)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        tracking = TrackingConfig(tracking_uri=uri, register="mmlu-pro-router")
        train_router("best-single", BestSingleConfig(), data, work / "v1", eval_data=data, tracking=tracking, progress=False)
        knn = train_router("knn", KNNConfig(), data, work / "v2", eval_data=data, tracking=tracking, progress=False)
        promote("mmlu-pro-router/1", "champion", tracking_uri=uri)
        record = promote("mmlu-pro-router/2", "champion", if_better_than="champion", data=data, tracking_uri=uri)
        print(f"gate: {record}")
        port = processes.free_port()
        bin_dir = Path(sys.executable).parent
        server = processes.start([str(bin_dir / "mlflow"), "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
                                  "--port", str(port), "--workers", "1"], work / "server.log")
        try:
            processes.wait_http(f"http://127.0.0.1:{port}/health", server, timeout=240, log=work / "server.log")
            time.sleep(2)
            import mlflow

            exp = mlflow.MlflowClient(tracking_uri=uri).get_run(knn.run_id).info.experiment_id
            base = f"http://127.0.0.1:{port}/#"
            shoot(browser, f"{base}/models/mmlu-pro-router/versions/2", out / "zoo-version.png", "2200,1300")
            shoot(browser, f"{base}/experiments/{exp}/runs/{knn.run_id}", out / "zoo-run-lineage.png", "2200,2400")
            shoot(browser, f"{base}/experiments/{exp}/runs/{knn.run_id}/artifacts/reports/cost_quality.png",
                  out / "zoo-run-cost-quality.png")
        finally:
            processes.stop(server, timeout=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
