"""One lifecycle contract over every kind of every role that has an artifact: routers, deferral
scorers and policies (the MDP router, a calibrated cascade). The kinds come from the registry, so a
kind registered the standard way (its file, its config, one registry line) is covered here without
touching this file; a policy kind that gains an artifact form must add its builder below (the suite
fails until it does).

Per kind, through the one loader (:func:`routerzoo.routers.core.loader.load`):
- save → load behaves the same: floats within tolerance, decisions exactly;
- tampering is refused in one line: weights edited (hash), schema from the future, a pickle beside
  the weights, ``weights_sha256`` deleted, the wrong role asked for, and a value no trained artifact
  holds under a recomputed hash (quality outside the range, a negative cost, NaN weights);
- the MLflow pyfunc round trip answers as the object itself does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
from cascade_data import cascade_table
from conftest import ENCODER_ATOL
from test_router_contract import PRICES, fast_config, outcome_table

from routerzoo.cli import main
from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import UserError
from routerzoo.routers import load, load_router
from routerzoo.routers.core.artifact import CONFIG_FILE, TENSOR_RANGES, WEIGHTS_FILE
from routerzoo.routers.registry import KINDS, ROLES
from routerzoo.training.train import TrackingConfig, train_router

PROMPTS = ["What is the derivative of x^3?", "Who signed the treaty of 1648?", "Factor x^2 + 5x + 6."]


def _has_artifact(spec) -> bool:
    return spec.role != "policy" or hasattr(spec.load_class(), "from_artifact")


def _param(role: str, kind: str):
    spec = KINDS[kind]
    # Lightning / transformer fits take tens of seconds each; the router contract runs them by default
    slow = role == "router" and (spec.fit or "").startswith("routerzoo.training")
    return pytest.param(role, kind, id=f"{role}-{kind}", marks=[pytest.mark.slow] if slow else [])


CASES = [_param(spec.role, kind) for kind, spec in sorted(KINDS.items()) if _has_artifact(spec)]


# -- building one artifact per kind ----------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    spec = SplitSpec(val=0.2, test=0.3)
    topics = save_dataset(make_dataset(outcome_table(), name="topics", split=spec, prices=PRICES), root / "topics")
    cascade = save_dataset(make_dataset(cascade_table(120), name="cascade", split=SplitSpec(val=0.3, test=0.3),
                                        prices={m: {"input": 1.0, "output": 2.0} for m in ("small", "mid", "large")}),
                           root / "cascade")
    return root, {"topics": topics, "cascade": cascade}


def _stage_config(cls) -> dict:
    """A deferral config scoring the cheapest stage of the cascade table, whatever the kind's fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in (("model", "small"), ("next_model", "mid")) if k in names}


def _deferral(kind, root, data):
    from routerzoo.routers.deferral.artifact import save_deferral
    from routerzoo.training.train_deferral import missing_reads, train_deferral

    spec = KINDS[kind]
    cfg = spec.load_config()(**_stage_config(spec.load_config()))
    if spec.fit is None and missing_reads(kind, load_dataset(data["cascade"]).outcome_matrix("train"), "small"):
        # an unsupervised kind whose input the table lacks (k samples): training refuses it (nothing
        # to evaluate it on), but it still has an artifact, written as configured
        scorer = spec.load_class()(cfg)
        return scorer, save_deferral(scorer, root / f"deferral-{kind}", lineage={"dataset": "none"})
    scorer, path, _ = train_deferral(kind, cfg, data["cascade"], root / f"deferral-{kind}", next_model="mid")
    return scorer, path


def _mdp(root, data, built):
    from routerzoo.routers.policies.mdp import MDPConfig
    from routerzoo.training.mdp import train_mdp

    _, scorer_dir = built("deferral", "token-quantile")
    config = MDPConfig(scorer=str(scorer_dir), epochs=3, iterations=2, hidden=8, pca_dims=3, max_calls=2)
    policy, path, _ = train_mdp(config, data["cascade"], root / "policy-mdp")
    return policy, path


def _cascade(root, data, built):
    _, scorer_dir = built("deferral", "token-quantile")
    out = root / "policy-cascade"
    assert main(["calibrate-cascade", "--data", str(data["cascade"]), "--chain", "small,mid,large",
                 "--scorer", str(scorer_dir), "--target-quality", "0.7", "--out", str(out)]) == 0
    return load(out, role="policy"), out


POLICY_BUILDERS = {"mdp": _mdp, "cascade": _cascade}


@pytest.fixture(scope="module")
def built(data):
    root, paths = data
    cache: dict = {}

    def get(role: str, kind: str):
        if (role, kind) not in cache:
            if role == "router":
                r = train_router(kind, fast_config(kind), paths["topics"], root / f"router-{kind}",
                                 tracking=TrackingConfig(enabled=False), progress=False)
                cache[role, kind] = (r.router, r.router_dir)
            elif role == "deferral":
                cache[role, kind] = _deferral(kind, root, paths)
            else:
                assert kind in POLICY_BUILDERS, f"policy kind {kind!r} has an artifact form: add its builder here"
                cache[role, kind] = POLICY_BUILDERS[kind](root, paths, get)
        return cache[role, kind]

    return get


# -- what each role does, to compare before and after --------------------------------------------
def _behaviour(obj, role: str, data) -> dict:
    """Floats (compared within tolerance) and decisions (compared exactly) of ``obj`` on fixed inputs."""
    if role == "router":
        pred = obj.predict(PROMPTS)
        # costs are USD (~1e-5): compared relative to their size, qualities within the encoder's noise
        return {"floats": [pred.quality, pred.cost / max(float(np.abs(pred.cost).max()), 1e-12)],
                "decisions": list(obj.choose(pred))}
    matrix = load_dataset(data["cascade"]).outcome_matrix("test")
    if role == "deferral":
        from routerzoo.routers.deferral.token_quantile import answers_for_training

        _, _, prompts, responses, lps, _ = answers_for_training(matrix, "small")
        scores = obj.predict(prompts, responses, lps)
        return {"floats": [scores], "decisions": list(scores >= 0.5)}
    from routerzoo.routers.policies.clients import OfflineClient

    traces = obj.run(list(matrix.prompts), OfflineClient(matrix))
    return {"floats": [np.array([t.cost for t in traces])],
            "decisions": [(tuple(c.model for c in t.calls), t.answer, t.known) for t in traces]}


def _same(a: dict, b: dict) -> None:
    for x, y in zip(a["floats"], b["floats"], strict=True):
        # a fresh encode differs from the fitted object's cached embeddings by float noise (conftest)
        np.testing.assert_allclose(x, y, rtol=0, atol=ENCODER_ATOL)
    assert a["decisions"] == b["decisions"]


@pytest.mark.parametrize("role, kind", CASES)
def test_save_load_round_trip(role, kind, built, data, tmp_path):
    obj, path = built(role, kind)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    doc = json.loads((path / CONFIG_FILE).read_text())
    assert doc["role"] == role and doc["kind"] == kind and len(doc["weights_sha256"]) == 64
    loaded = load(path)  # any role: the artifact says what it is
    assert type(loaded) is KINDS[kind].load_class() and loaded.kind == kind
    assert type(load(path, role=role)) is type(loaded)
    _same(_behaviour(obj, role, data[1]), _behaviour(loaded, role, data[1]))
    if role == "router":
        assert type(load_router(path)) is type(loaded)  # load_router: the one loader, routers only


# -- tampering -------------------------------------------------------------------------------------
def _copy(path, dst):
    shutil.copytree(path, dst)
    return dst


def _edit(path, **fields):
    cfg = json.loads((path / CONFIG_FILE).read_text())
    for key, value in fields.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (path / CONFIG_FILE).write_text(json.dumps(cfg))


def _refused(path, match: str, role=None):
    with pytest.raises(UserError, match=match) as info:
        load(path, role=role)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def _out_of_range(tensors: dict, quality_range) -> str | None:
    """Corrupt one float tensor the way its declared range forbids; the tensor's name, or None."""
    for name, arr in tensors.items():
        if name == "empty" or not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
            continue
        rule = TENSOR_RANGES.get(name.rsplit("/", 1)[-1].rsplit(".", 1)[-1], "finite")  # as check_values reads it
        bad = arr.copy()
        bad.flat[0] = {"quality": quality_range[1] + 1.0, "cost": -1.0}.get(rule, np.nan)
        tensors[name] = bad
        return name
    return None


@pytest.mark.parametrize("role, kind", CASES)
def test_tampering_is_refused_in_one_line(role, kind, built, tmp_path):
    from safetensors.numpy import load_file, save_file

    _, path = built(role, kind)
    t = _copy(path, tmp_path / "t")
    (t / WEIGHTS_FILE).write_bytes((t / WEIGHTS_FILE).read_bytes() + b" ")
    _refused(t, "sha256 does not match")
    shutil.rmtree(t)

    t = _copy(path, tmp_path / "t")
    _edit(t, schema_version=99)
    _refused(t, "schema version 99 is newer")
    shutil.rmtree(t)

    t = _copy(path, tmp_path / "t")
    (t / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    _refused(t, "pickle")
    (t / "extra.pkl").unlink()
    (t / "notes.txt").write_bytes(b"\x80\x04K\x01.")  # pickle bytes under an innocent name
    _refused(t, "pickle")
    shutil.rmtree(t)

    t = _copy(path, tmp_path / "t")
    _edit(t, weights_sha256=None)  # deleting the field must not switch the check off
    _refused(t, "weights_sha256' is missing")
    shutil.rmtree(t)

    t = _copy(path, tmp_path / "t")
    other = next(r for r in ROLES if r != role)
    _refused(t, f"is a {role} artifact .*not a {other}", role=other)

    doc = json.loads((t / CONFIG_FILE).read_text())
    tensors = load_file(str(t / WEIGHTS_FILE))
    name = _out_of_range(tensors, doc.get("quality_range", [0.0, 1.0]))
    if name is None:
        return  # an unsupervised scorer holds no values to corrupt
    save_file(tensors, str(t / WEIGHTS_FILE))
    _edit(t, weights_sha256=hashlib.sha256((t / WEIGHTS_FILE).read_bytes()).hexdigest())
    _refused(t, "refusing to load")


# -- MLflow pyfunc ---------------------------------------------------------------------------------
def _pyfunc_input(obj, role: str, data):
    import pandas as pd

    matrix = load_dataset(data["cascade"]).outcome_matrix("test")
    if role == "router":
        return pd.DataFrame({"prompt": PROMPTS})
    if role == "deferral":
        from routerzoo.routers.deferral.token_quantile import answers_for_training

        _, _, prompts, responses, lps, _ = answers_for_training(matrix, "small")
        return pd.DataFrame({"prompt": prompts, "response": responses, "token_logprobs": [list(map(float, x)) for x in lps]})
    frame = {"prompt": list(matrix.prompts)}
    for j, m in enumerate(matrix.models):
        frame[m] = [None if np.isnan(matrix.quality[i, j]) else matrix.responses[i, j] for i in range(len(matrix))]
        frame[f"{m}:token_logprobs"] = [None if matrix.token_logprobs[i, j] is None else list(map(float, matrix.token_logprobs[i, j]))
                                        for i in range(len(matrix))]
        frame[f"{m}:cost"] = list(matrix.cost[:, j])
    return pd.DataFrame(frame)


@pytest.mark.parametrize("role, kind", CASES)
def test_pyfunc_round_trip(role, kind, built, data):
    import logging

    import mlflow

    from routerzoo.zoo.pyfunc import load_registered, log_model
    from routerzoo.zoo.tracking import run

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    obj, path = built(role, kind)
    seen = Records()
    logging.getLogger("mlflow.pyfunc").addHandler(seen)
    try:
        with run("lifecycle-contract", run_name=f"{role}-{kind}"):
            info = log_model(path)
    finally:
        logging.getLogger("mlflow.pyfunc").removeHandler(seen)
    # a scorer or policy has no fixed signature by design: MLflow's warning about it is not shown to users
    assert not [m for m in seen.messages if "signature" in m]
    model = load_registered(info.model_uri)
    frame = _pyfunc_input(obj, role, data[1])
    got = model.predict(frame)
    if role == "router":
        assert list(got["model"]) == list(obj.choose(obj.predict(PROMPTS)))
    elif role == "deferral":
        lps = [np.asarray(x) for x in frame["token_logprobs"]]
        np.testing.assert_allclose(got["score"].to_numpy(), obj.predict(list(frame["prompt"]), list(frame["response"]), lps),
                                   rtol=1e-9, atol=1e-12)
    else:
        from routerzoo.routers.policies.clients import OfflineClient

        matrix = load_dataset(data[1]["cascade"]).outcome_matrix("test")
        traces = obj.run(list(matrix.prompts), OfflineClient(matrix))
        want = [t.calls[t.answer].model if t.calls and t.answer >= 0 else None for t in traces]
        assert list(got["model"]) == want
        np.testing.assert_allclose(got["cost"].to_numpy(dtype=float), [t.cost for t in traces], rtol=1e-9)
    assert mlflow.active_run() is None
