"""One contract over every registered router: fit, scores shape, decisions, save/load round trip."""

import json
import subprocess
import sys

import numpy as np
import pytest

from routerzoo.data.dataset import load_dataset
from routerzoo.errors import UserError
from routerzoo.routers import ROUTERS, load_router
from routerzoo.routers.base import CONFIG_FILE, WEIGHTS_FILE, decide
from routerzoo.training.registry import TRAINERS
from routerzoo.training.train import TrackingConfig, train_router


def test_registries_agree():
    assert set(ROUTERS) == set(TRAINERS)
    for kind, spec in TRAINERS.items():
        assert ROUTERS[kind].uses_embeddings == spec.uses_embeddings, kind


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every registered router trained once on the topic dataset (fast settings)."""
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("contract")
    data = save_dataset(make_dataset(topic_outcomes(40), name="topics", split=SplitSpec(val=0.2, test=0.3)), root / "data")
    out = {}
    for kind, spec in TRAINERS.items():
        config_cls, _ = spec.load()
        overrides = {"max_epochs": 5} if kind == "mlp" else {}
        result = train_router(kind, config_cls(**overrides), data, root / kind, tracking=TrackingConfig(enabled=False), progress=False)
        out[kind] = result
    return data, out


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_contract(kind, trained, tmp_path):
    data, results = trained
    router_dir = results[kind].router_dir
    assert sorted(p.name for p in router_dir.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((router_dir / CONFIG_FILE).read_text())
    assert config["kind"] == kind and config["schema_version"] == 1
    assert config["models"] == ["math-small", "history-small", "big"]
    assert config["lineage"]["dataset_sha256"] == load_dataset(data).manifest["sha256"]
    assert (config["encoder"] is not None) == ROUTERS[kind].uses_embeddings

    router = load_router(router_dir)
    prompts = ["What is the derivative of x^3?", "Who signed the treaty of 1648?", "Factor x^2 + 5x + 6."]
    pred = router.predict(prompts)
    assert pred.quality.shape == (3, 3) and pred.cost.shape == (3, 3)
    assert np.all((pred.quality >= 0) & (pred.quality <= 1)) and np.all(pred.cost >= 0)
    np.testing.assert_allclose(router.scores(prompts), pred.quality)
    assert router.predict([]).quality.shape == (0, 3)

    cheap = router.route(prompts, cost_weight=1e9)
    assert all(name in router.models for name in cheap)
    assert "big" not in cheap  # with an enormous cost weight nobody pays 100× more
    assert router.route_threshold(prompts, threshold=2.0, strong="big", weak="math-small") == ["math-small"] * 3
    assert router.route_threshold(prompts, threshold=-2.0, strong="big", weak="math-small") == ["big"] * 3
    with pytest.raises(UserError, match="not a candidate"):
        router.route_threshold(prompts, 0.0, strong="gpt-9", weak="big")

    # save → load gives the same predictions
    again = load_router(router.save(tmp_path / "copy"))
    np.testing.assert_allclose(again.predict(prompts).quality, pred.quality, rtol=1e-6)
    np.testing.assert_allclose(again.predict(prompts).cost, pred.cost, rtol=1e-6)


def test_decide_ties_and_weights():
    q = np.array([[0.9, 0.9, 0.5], [0.2, 0.8, 0.8]])
    c = np.array([[3.0, 1.0, 0.1], [1.0, 2.0, 2.0]])
    assert decide(q, c, 0.0).tolist() == [1, 1]  # tie → cheaper, then lower index
    assert decide(q, c, 1.0).tolist() == [2, 0]


def test_load_errors(tmp_path, trained):
    with pytest.raises(UserError, match="not a router artifact"):
        load_router(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{oops")
    with pytest.raises(UserError, match="not valid JSON"):
        load_router(tmp_path)
    good = json.loads((trained[1]["knn"].router_dir / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps(dict(good, schema_version=99)))
    with pytest.raises(UserError, match="newer than this routerzoo"):
        load_router(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(dict(good, kind="transformer-xxl")))
    with pytest.raises(UserError, match="unknown router kind"):
        load_router(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(good))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="cannot read weights"):
        load_router(tmp_path)


def test_inference_does_not_import_lightning(trained):
    """A server loads routers without Lightning or training code (startup time, dependencies)."""
    router_dir = trained[1]["mlp"].router_dir
    code = (
        "import sys; from routerzoo.routers import load_router; "
        f"r = load_router({str(router_dir)!r}); r.predict(['What is 2+2?']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'mlflow') or m.startswith('routerzoo.training')]; "
        "print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
