"""Loading a router never unpickles, locally or from the registry; a registered artifact whose weights,
schema version or contents were tampered with in the artifact store is refused with one clear line.
(Field-by-field config corruption is covered in test_artifacts.py.)"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

from routerzoo.errors import UserError
from routerzoo.routers import load_router
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.training.train import TrackingConfig, train_router

PROMPTS = ["Compute the integral of 3x^2 from 0 to 2.", "Which treaty ended the war that began in 1618?"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("safety")
    data = save_dataset(make_dataset(topic_outcomes(20), name="topics", split=SplitSpec(val=0.2, test=0.3)), root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = train_router("knn", KNNConfig(k=3), data, root / "knn", tracking=TrackingConfig(tracking_uri=uri, register="safe"),
                          progress=False)
    return {"root": root, "uri": uri, "dir": result.router_dir}


def test_loading_never_unpickles(registered, monkeypatch):
    """Every unpickling entry point raises during load and predict: routerzoo, registry URI and pyfunc."""
    import _pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle while loading a router")

    from routerzoo.zoo.tracking import setup

    mlflow = setup(registered["uri"])
    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, refuse)
    local = load_router(registered["dir"])
    remote = load_router("models:/safe/1", tracking_uri=registered["uri"])
    model = mlflow.pyfunc.load_model("models:/safe/1")
    expected = local.route(PROMPTS)
    assert remote.route(PROMPTS) == expected
    assert model.predict(pd.DataFrame({"prompt": PROMPTS}))["model"].tolist() == expected


def _stored_router(registered) -> Path:
    """The registered version's router folder inside the SQLite store's artifact root."""
    found = [p.parent for p in (registered["root"] / "mlartifacts").rglob("config.json")
             if p.parent.name == "router" and "models" in p.parts]  # the logged model's copy, not the run's
    assert found, "registered model's router not found in the artifact store"
    return found[0]


@pytest.mark.parametrize("tamper,message", [
    ("weights", "sha256 does not match"),
    ("schema_old", "unknown artifact schema version 0"),
    ("schema_new", "newer than this routerzoo supports"),
    ("pickle_file", "never contain pickled files"),
    ("pickle_bytes", "looks like a Python pickle"),
])
def test_tampered_registered_artifact_is_refused(registered, tamper, message):
    stored = _stored_router(registered)
    backup = stored.parent / "router.bak"
    shutil.copytree(stored, backup)
    try:
        if tamper == "weights":
            data = bytearray((stored / "weights.safetensors").read_bytes())
            data[-1] ^= 0xFF
            (stored / "weights.safetensors").write_bytes(bytes(data))
        elif tamper.startswith("schema"):
            config = json.loads((stored / "config.json").read_text())
            config["schema_version"] = 0 if tamper == "schema_old" else 3
            (stored / "config.json").write_text(json.dumps(config))
        elif tamper == "pickle_file":
            (stored / "extra.pkl").write_bytes(pickle.dumps({"x": 1}))
        else:  # a pickle under an innocent name
            (stored / "notes.txt").write_bytes(pickle.dumps({"x": 1}))
        for source in ("models:/safe/1", stored):
            with pytest.raises(UserError) as info:
                load_router(source, tracking_uri=registered["uri"])
            text = str(info.value)
            assert message in text and "\n" not in text, text
    finally:
        shutil.rmtree(stored)
        backup.rename(stored)
    assert load_router("models:/safe/1", tracking_uri=registered["uri"]).kind == "knn"
