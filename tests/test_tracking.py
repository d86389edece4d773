"""Training logs params, metrics, the resolved config, lineage and the artifact to a real MLflow store."""

import json

from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.routers.kinds.mlp import MLPConfig
from routerzoo.training.train import TrackingConfig, train_router


def test_run_is_logged_with_lineage(topic_dataset, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_router(
        "mlp", MLPConfig(max_epochs=4, hidden=[32]), topic_dataset, tmp_path / "mlp",
        tracking=TrackingConfig(tracking_uri=uri, experiment="exp-test"), progress=False,
        resolved_config={"kind": "mlp", "router": {"hidden": [32]}},
    )
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["router"] == "mlp" and run.data.params["config.hidden"] == "[32]"
    assert run.data.tags["routerzoo.dataset"] == "topics" and len(run.data.tags["routerzoo.dataset_sha256"]) == 64
    for key in ("val_aiq", "val_gap_closed", "val_aiq_oracle", "fit_s", "best_epoch"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(result.run_id, "train_bce")
    assert len(history) >= 2  # Lightning's MLFlowLogger wrote into the same run, per epoch
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"router", "config.json", "dataset", "reports"} <= artifacts
    assert {a.path for a in client.list_artifacts(result.run_id, "router")} == {"router/config.json", "router/weights.safetensors"}
    lineage = json.loads((result.router_dir / "config.json").read_text())["lineage"]
    assert lineage["mlflow_run_id"] == result.run_id and lineage["dataset"] == "topics"
    # artifacts live beside the SQLite store, not in the working directory
    assert (tmp_path / "mlartifacts").is_dir()


def test_tracking_uri_from_environment(topic_dataset, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = train_router("knn", KNNConfig(k=3), topic_dataset, tmp_path / "knn", progress=False)
    import mlflow

    assert mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).data.params["router"] == "knn"


def test_default_store_is_sqlite_in_the_working_directory(topic_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = train_router("best-single", None, topic_dataset, tmp_path / "bs", progress=False)
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).info.status == "FINISHED"
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
