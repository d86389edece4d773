"""One contract over every registered router kind (scikit-learn's ``parametrize_with_checks`` is the
model): a kind that registers itself in ``routerzoo.routers.registry`` is covered here without
touching this file.

Each kind is trained on an outcome fixture (three models, topic-dependent quality, token counts and
prices) and on a preference-pair fixture, then checked: artifact layout and no pickle; fitted ≡
saved-and-loaded; a batch ≡ one prompt at a time; deterministic under a seed; decisions follow the
cost weight and the prices in force; clear errors for bad prompts, unknown models and mismatched
prices; MLflow pyfunc round trip; schema-1 artifacts still load. A kind that does not learn from
preference pairs declares it in the registry (``trains_from``) and must refuse them with one line.

What "equal" means, so that the suite holds on every machine: float32 encoder outputs for the same
text differ by ~1e-7 across batch compositions (padding), the disk cache and CPUs. So

- the learned weights must survive saving to the bit (nothing is recomputed);
- given the *same* embeddings, fitted and loaded predictions are equal to the bit;
- where a router encodes afresh, predictions agree within :data:`ENCODER_ATOL` and the decisions
  (λ-argmax at several λ, under other prices, the two-model threshold) are identical.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ENCODER_ATOL

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import UserError
from routerzoo.routers import load_router
from routerzoo.routers.core.artifact import CONFIG_FILE, WEIGHTS_FILE, ArtifactError
from routerzoo.routers.core.cost import PriceError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.registry import kinds
from routerzoo.training.train import TrackingConfig, train_router

ROUTER_KINDS = sorted(kinds("router"))
FIXTURES = ("outcomes", "preferences")
#: (kind, fixture) pairs a kind must train on: every kind on outcomes, pair learners on pairs too
TRAINABLE = [(k, f) for k in ROUTER_KINDS for f in FIXTURES if f == "outcomes" or "pairs" in kinds("router")[k].trains_from]
COST_WEIGHTS = (0.0, 30.0, 300.0, 3000.0, 1e9)
PROMPTS = ["What is the derivative of x^3?", "Who signed the treaty of 1648?", "Factor x^2 + 5x + 6.",
           "Describe the causes of the war that began in 1914.", "Compute 7 to the power 3 modulo 5."]
PRICES = {"math-small": {"input": 0.1, "output": 0.2}, "history-small": {"input": 0.1, "output": 0.2},
          "big": {"input": 10.0, "output": 20.0}}
OFF = TrackingConfig(enabled=False)


def fast_config(kind: str):
    """The kind's defaults, with any epoch budget cut so the suite stays fast."""
    cls = kinds("router")[kind].load_config()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**({"max_epochs": 3} if "max_epochs" in names else {}))


def outcome_table():
    from conftest import topic_outcomes

    df = topic_outcomes(40)
    rng = np.random.default_rng(3)
    df["input_tokens"] = rng.integers(20, 60, len(df))
    df["output_tokens"] = rng.integers(50, 150, len(df))
    price = df["model"].map(PRICES)
    df["cost"] = [(i * p["input"] + o * p["output"]) / 1e6 for i, o, p in zip(df["input_tokens"], df["output_tokens"], price, strict=True)]
    return df


def preference_table():
    """Pairs from the same topics: big beats the small models, each small one wins its own topic."""
    import pandas as pd
    from conftest import topic_outcomes

    rows = []
    base = topic_outcomes(40).drop_duplicates("prompt_id")
    for _, r in base.iterrows():
        own = "math-small" if r["category"] == "math" else "history-small"
        other = "history-small" if own == "math-small" else "math-small"
        rows += [
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "model_a": "big", "model_b": other, "winner": "a"},
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "model_a": own, "model_b": other, "winner": "a"},
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "model_a": own, "model_b": "big", "winner": "tie"},
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    spec = SplitSpec(val=0.2, test=0.3)
    outcomes = save_dataset(make_dataset(outcome_table(), name="topics", split=spec, prices=PRICES), root / "outcomes")
    prefs = save_dataset(make_dataset(preferences=preference_table(), name="pairs", split=spec), root / "prefs")
    return root, {"outcomes": outcomes, "preferences": prefs}


@pytest.fixture(scope="module")
def trained(fixtures):
    """Every router kind trained once per fixture; a kind that cannot train on a fixture must say why."""
    root, data = fixtures
    out: dict = {}
    for kind in ROUTER_KINDS:
        for name, path in data.items():
            try:
                out[kind, name] = train_router(kind, fast_config(kind), path, root / f"{kind}-{name}", tracking=OFF, progress=False)
            except UserError as exc:
                out[kind, name] = exc
    return out


def _result(trained, kind: str, fixture: str = "outcomes"):
    result = trained[kind, fixture]
    assert not isinstance(result, Exception), f"{kind} failed to train on {fixture}: {result}"
    return result


def assert_same_decisions(router, a, b, prompts=PROMPTS):
    """Two predictions (e.g. fitted vs loaded) lead to identical decisions: λ-argmax at every λ of
    COST_WEIGHTS, under other prices, and the two-model threshold at the reference's median margin."""
    from routerzoo.routers.policies.argmax import decide

    for weight in COST_WEIGHTS:
        np.testing.assert_array_equal(decide(a.quality, a.cost, weight), decide(b.quality, b.cost, weight),
                                      err_msg=f"{router.kind}: decisions differ at cost_weight={weight}")
    i, j = router.models.index("big"), router.models.index("math-small")
    margin_a, margin_b = a.quality[:, i] - a.quality[:, j], b.quality[:, i] - b.quality[:, j]
    t = float(np.median(margin_a))
    # a threshold exactly at a prompt's margin decides on float noise: move it off the margins
    gaps = np.abs(margin_a - t)
    t += 0.5 * float(np.min(gaps[gaps > ENCODER_ATOL], initial=1.0)) if np.any(gaps <= ENCODER_ATOL) else 0.0
    np.testing.assert_array_equal(margin_a >= t, margin_b >= t, err_msg=f"{router.kind}: threshold decisions differ")


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_trains_on_outcomes(kind, trained):
    assert not isinstance(trained[kind, "outcomes"], Exception), trained[kind, "outcomes"]


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_preferences_train_or_refuse_as_declared(kind, trained):
    """Pair learners (``trains_from`` has "pairs") train on a pairs-only dataset; the others refuse
    it with one line that says what they need and which kinds do learn from pairs."""
    result = trained[kind, "preferences"]
    if "pairs" in kinds("router")[kind].trains_from:
        assert not isinstance(result, Exception), result
        assert sorted(result.router.models) == ["big", "history-small", "math-small"]
    else:
        assert isinstance(result, UserError), f"{kind} declares outcomes only but trained on pairs"
        message = str(result)
        assert "\n" not in message and f"router {kind!r} trains on benchmark outcomes" in message
        assert "'elo'" in message and f"'{kind}'" not in message.partition("(")[2]


@pytest.mark.parametrize(("kind", "fixture"), TRAINABLE)
def test_artifact_layout_and_no_pickle(kind, fixture, trained, fixtures):
    result = _result(trained, kind, fixture)
    files = sorted(p.name for p in result.router_dir.iterdir())
    assert files == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((result.router_dir / CONFIG_FILE).read_text())
    assert config["schema_version"] == 2 and config["kind"] == kind
    assert config["models"] == result.router.models
    assert config["lineage"]["dataset_sha256"] == load_dataset(fixtures[1][fixture]).manifest["sha256"]
    assert (config["encoder"] is not None) == kinds("router")[kind].load_class().uses_embeddings
    assert config["config"] == dataclasses.asdict(result.router.config)
    from safetensors.numpy import load_file

    assert load_file(str(result.router_dir / WEIGHTS_FILE))  # tensors in safetensors, config in JSON: no pickle
    (result.router_dir.parent / f"{kind}-{fixture}-pkl").mkdir(exist_ok=True)
    tampered = result.router_dir.parent / f"{kind}-{fixture}-pkl" / "r"
    shutil.copytree(result.router_dir, tampered, dirs_exist_ok=True)
    (tampered / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ArtifactError, match="never contain pickled"):
        load_router(tampered)


@pytest.mark.parametrize(("kind", "fixture"), TRAINABLE)
def test_fitted_equals_loaded_and_batch_equals_single(kind, fixture, trained):
    result = _result(trained, kind, fixture)
    fitted, loaded = result.router, load_router(result.router_dir)
    # nothing is recomputed between saving and loading the weights: equal to the bit
    saved = fitted.state()
    assert sorted(loaded.state()) == sorted(saved)
    for name, value in loaded.state().items():
        np.testing.assert_array_equal(value, saved[name], err_msg=f"{kind}: tensor {name}")
    # the loaded router encodes afresh (its own memory cache); the fitted one reads the training
    # run's disk cache, filled by batches of other prompts: equal within float noise, same decisions
    a, b = fitted.predict(PROMPTS), loaded.predict(PROMPTS)
    m = len(fitted.models)
    assert a.quality.shape == (len(PROMPTS), m) and a.cost.shape == (len(PROMPTS), m)
    np.testing.assert_allclose(b.quality, a.quality, rtol=0, atol=ENCODER_ATOL)
    np.testing.assert_allclose(b.cost, a.cost, rtol=1e-5, atol=1e-12)
    assert_same_decisions(loaded, a, b)
    # given the very same embeddings, nothing differs at all
    if fitted.encoder is not None and fitted.loaded_encoder is not None and loaded.loaded_encoder is not None:
        shared = load_router(result.router_dir)
        shared.set_encoder(fitted.loaded_encoder)
        same = shared.predict(PROMPTS)
        np.testing.assert_array_equal(same.quality, a.quality)
        np.testing.assert_array_equal(same.cost, a.cost)
    lo, hi = loaded.quality_range
    assert np.all((a.quality >= lo) & (a.quality <= hi)) and np.all(a.cost >= 0)
    singles = [loaded.predict([p]) for p in PROMPTS]
    np.testing.assert_allclose(np.concatenate([s.quality for s in singles]), b.quality, rtol=0, atol=ENCODER_ATOL)
    np.testing.assert_allclose(np.concatenate([s.cost for s in singles]), b.cost, rtol=1e-5, atol=1e-12)
    assert_same_decisions(loaded, b, Prediction(np.concatenate([s.quality for s in singles]),
                                                np.concatenate([s.cost for s in singles])))
    assert loaded.predict([]).quality.shape == (0, m)
    np.testing.assert_array_equal(loaded.scores(PROMPTS), loaded.predict(PROMPTS).quality)


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_deterministic_under_seed(kind, trained, fixtures, tmp_path):
    result = _result(trained, kind)
    again = train_router(kind, fast_config(kind), fixtures[1]["outcomes"], tmp_path / "again", tracking=OFF, progress=False)
    np.testing.assert_array_equal(again.router.predict(PROMPTS).quality, result.router.predict(PROMPTS).quality)


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_decisions_follow_cost_weight_and_prices(kind, trained):
    router = load_router(_result(trained, kind).router_dir)
    assert all(name in router.models for name in router.route(PROMPTS))
    assert "big" not in router.route(PROMPTS, cost_weight=1e9)  # nobody pays 100× more at that λ
    # the two-model form sends exactly the prompts whose predicted margin reaches the threshold
    q = router.predict(PROMPTS).quality
    margin = q[:, router.models.index("big")] - q[:, router.models.index("math-small")]
    for t in (float(np.median(margin)), float(margin.min()), float(margin.max()) + 1e-9):
        expected = ["big" if x >= t else "math-small" for x in margin]
        assert router.route_threshold(PROMPTS, threshold=t, strong="big", weak="math-small") == expected
    # λ-argmax at λ = 0 is the best predicted model (ties within float noise to the cheaper one)
    from routerzoo.routers.policies.argmax import TIE_TOLERANCE

    pred = router.predict(PROMPTS)
    for row, crow, name in zip(pred.quality, pred.cost, router.route(PROMPTS, cost_weight=0.0), strict=True):
        chosen = router.models.index(name)
        assert row[chosen] >= row.max() - TIE_TOLERANCE * max(1.0, abs(row.max()))
        tied = row >= row.max() - TIE_TOLERANCE * max(1.0, abs(row.max()))
        assert crow[chosen] == crow[tied].min()
    # new prices, no retraining: make "big" nearly free and it wins at a high λ
    cheap_big = router.with_prices({"big": {"input": 0.0001, "output": 0.0001}})
    np.testing.assert_array_equal(cheap_big.predict(PROMPTS).quality, router.predict(PROMPTS).quality)
    assert cheap_big.predict(PROMPTS).cost[:, router.models.index("big")].max() < 1e-6
    assert router.predict(PROMPTS).cost[:, router.models.index("big")].min() > 1e-4  # the original is untouched
    assert set(cheap_big.route(PROMPTS, cost_weight=1e9)) == {"big"}


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_clear_errors(kind, trained):
    router = load_router(_result(trained, kind).router_dir)
    with pytest.raises(UserError, match="not a candidate"):
        router.route_threshold(PROMPTS, 0.0, strong="gpt-9", weak="big")
    with pytest.raises(PriceError, match="gpt-9"):
        router.with_prices({"gpt-9": {"input": 1.0, "output": 1.0}})
    with pytest.raises(PriceError, match="must be a number"):
        router.with_prices({"big": {"input": -1.0, "output": 1.0}})
    with pytest.raises(UserError, match="prompt 1 is not a string"):
        router.predict(["fine", 3])
    with pytest.raises(UserError, match="single string"):
        router.predict("not a list")


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_schema_1_artifacts_still_load(kind, trained, tmp_path):
    result = _result(trained, kind)
    v2 = json.loads((result.router_dir / CONFIG_FILE).read_text())
    v1 = {"schema_version": 1, "kind": kind, "models": v2["models"], "model_costs": v2["cost_model"]["mean_cost"],
          "prices": v2["cost_model"]["prices"], "encoder": v2["encoder"], "params": v2["config"], "lineage": v2["lineage"]}
    old = tmp_path / "old"
    old.mkdir()
    (old / CONFIG_FILE).write_text(json.dumps(v1))
    shutil.copy(result.router_dir / WEIGHTS_FILE, old / WEIGHTS_FILE)
    loaded = load_router(old)
    assert loaded.lineage["upgraded_from_schema"] == 1
    for name, value in loaded.state().items():
        np.testing.assert_array_equal(value, result.router.state()[name])
    a, b = result.router.predict(PROMPTS), loaded.predict(PROMPTS)
    np.testing.assert_allclose(b.quality, a.quality, rtol=0, atol=ENCODER_ATOL)
    assert_same_decisions(loaded, a, b)
    (old / CONFIG_FILE).write_text(json.dumps(dict(v1, schema_version=7)))
    with pytest.raises(ArtifactError, match="schema version 7 is newer"):
        load_router(old)


def test_pyfunc_round_trip_for_every_kind(trained, tmp_path, monkeypatch):
    """Each kind logged as an MLflow pyfunc and loaded back decides as the router itself does."""
    import pandas as pd

    from routerzoo.zoo.pyfunc import load_registered, log_router_model
    from routerzoo.zoo.tracking import run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for kind in ROUTER_KINDS:
        result = trained[kind, "outcomes"]
        with run("contract"):  # an experiment whose artifacts live beside the store, not in the cwd
            info = log_router_model(result.router_dir)
        model = load_registered(info.model_uri)
        frame = pd.DataFrame({"prompt": PROMPTS})
        for weight in (0.0, 300.0):
            out = model.predict(frame, params={"cost_weight": weight})
            assert out["model"].tolist() == result.router.route(PROMPTS, cost_weight=weight), kind
        assert model.predict(frame)["model"].tolist() == result.router.route(PROMPTS), kind  # the artifact's policy
        back = load_router(info.model_uri)
        a, b = result.router.predict(PROMPTS), back.predict(PROMPTS)
        np.testing.assert_allclose(b.quality, a.quality, rtol=0, atol=ENCODER_ATOL)
        assert_same_decisions(back, a, b)


def test_registry_lists_every_kind_and_yaml_configs_match_defaults():
    """`routerzoo routers` comes from the one registry; each router's YAML parses against its typed
    config and repeats its defaults (one set of defaults: the dataclass)."""
    import yaml
    from conftest import REPO

    from routerzoo.cli import main

    for kind in ROUTER_KINDS:
        path = REPO / "configs" / "routers" / f"{kind}.yaml"
        assert path.is_file(), f"{kind} has no {path}"
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == kind
        defaults = dataclasses.asdict(kinds("router")[kind].load_config()())
        for key, value in (doc.get("router") or {}).items():
            assert key in defaults and defaults[key] == value, (kind, key)
    proc = subprocess.run([sys.executable, "-m", "routerzoo", "routers"], capture_output=True, text=True, check=True)
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert set(kinds()) <= listed, set(kinds()) - listed
    assert main(["routers"]) == 0


def test_inference_imports_nothing_heavy(trained):
    """A server loads and runs routers without pandas, pyarrow, Lightning, MLflow, matplotlib or training code."""
    heavy = ("pandas", "pyarrow", "lightning", "pytorch_lightning", "mlflow", "matplotlib", "sklearn")
    code = (
        "import sys; import routerzoo.routers; "
        f"heavy = {heavy!r}; "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('routerzoo.training')]; "
        "assert not bad, ('import', bad); "
        "from routerzoo.routers import load_router; "
        f"r = load_router({str(trained['mlp', 'outcomes'].router_dir)!r}); r.route(['What is 2+2?']); "
        f"r = load_router({str(trained['knn', 'outcomes'].router_dir)!r}); r.route(['What is 2+2?']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('routerzoo.training')]; "
        "assert not bad, ('predict', bad); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
