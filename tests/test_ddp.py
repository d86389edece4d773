"""Lightning DDP: `routerzoo train ... --trainer.strategy ddp --trainer.devices 2` on CPU (two processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from routerzoo.routers import load_router


@pytest.mark.slow
def test_mlp_trains_with_two_cpu_processes_and_rank_0_alone_writes_and_tracks(topic_dataset, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "routerzoo", "train", "--router", "mlp", "--data", str(topic_dataset),
           "--out", str(tmp_path / "ddp"), "--router.max_epochs", "3", "--tracking.tracking_uri", store,
           "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("written to") == 1, proc.stdout  # the worker process reports nothing
    router = load_router(tmp_path / "ddp")
    assert set(router.route(["What is 7 times 8?", "Who won the battle of Hastings?"])) <= set(router.models)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1  # rank 0 alone tracks
    assert runs[0].data.metrics["world_size"] == 2  # and it trained in a world of two processes
