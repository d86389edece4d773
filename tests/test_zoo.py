"""Routers as MLflow pyfunc models: logged from code (no pickle), registered, loaded by alias."""

import pandas as pd
import pytest

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers import load_router
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.training.train import TrackingConfig, train_router

PROMPTS = ["Compute the integral of 3x^2 from 0 to 2.", "Which treaty ended the war that began in 1618?"]


def test_register_alias_load_and_predict(topic_dataset, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking = TrackingConfig(register="topic-router", alias="champion")
    result = train_router("knn", KNNConfig(k=5), topic_dataset, tmp_path / "knn", tracking=tracking, progress=False)
    assert result.registered_version == 1

    from routerzoo.zoo.pyfunc import load_registered

    model = load_registered("models:/topic-router@champion")
    out = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"cost_weight": 0.0})
    router = load_router(result.router_dir)
    assert out["model"].tolist() == router.route(PROMPTS, cost_weight=0.0)
    cheap = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"cost_weight": 1e9})
    assert "big" not in cheap["model"].tolist()
    two = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"strong": "big", "weak": "math-small", "threshold": 5.0})
    assert two["model"].tolist() == ["math-small", "math-small"]

    # a second version moves the alias; the first stays addressable by number
    train_router("knn", KNNConfig(k=3), topic_dataset, tmp_path / "knn2", tracking=tracking, progress=False)
    import mlflow

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("topic-router", "champion").version) == "2"
    first = load_registered("models:/topic-router/1")
    assert first.predict(pd.DataFrame({"prompt": PROMPTS}))["model"].tolist() == load_router(result.router_dir).route(PROMPTS)
    assert load_router("models:/topic-router/1").config.k == 5 and load_router("models:/topic-router@champion").config.k == 3

    # nothing pickled in the logged model
    local = mlflow.artifacts.download_artifacts(result.model_uri, dst_path=str(tmp_path / "dl"))
    from pathlib import Path

    names = {p.name for p in Path(local).rglob("*") if p.is_file()}
    assert not any(n.endswith((".pkl", ".pickle", ".cloudpickle")) for n in names), names
    assert {"config.json", "weights.safetensors", "pyfunc_model.py", "MLmodel"} <= names


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from routerzoo.zoo.pyfunc import load_registered
    from routerzoo.zoo.tracking import setup

    setup()
    with pytest.raises(UserError, match="cannot load models:/missing@champion"):
        load_registered("models:/missing@champion")
    with pytest.raises(ConfigError, match="needs --tracking.register"):
        TrackingConfig(alias="champion")


def test_serving_loader_resolves_alias_without_lightning(topic_dataset, tmp_path, monkeypatch):
    """The server's load path: models:/NAME@ALIAS → plain Router, in a process without Lightning."""
    import os
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = TrackingConfig(tracking_uri=uri, register="served", alias="champion")
    train_router("knn", KNNConfig(k=5), topic_dataset, tmp_path / "knn", tracking=tracking, progress=False)
    code = (
        "import sys; from routerzoo.serving import load_serving_router; "
        "r = load_serving_router('models:/served@champion'); "
        f"print(r.kind, r.route({PROMPTS!r}, cost_weight=1e9)); "
        "assert not [m for m in sys.modules if m.startswith(('lightning', 'routerzoo.training'))]"
    )
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("knn [") and "big" not in out.stdout

    from routerzoo.serving import load_serving_router

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(UserError, match="cannot resolve models:/served@nobody"):
        load_serving_router("models:/served@nobody")
