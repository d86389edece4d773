"""POST /v1/feedback over real HTTP on loopback: a linucb router learns from rewards, durably.

Fake OpenAI-compatible backends answer; the bandit is trained (offline, every outcome) on the topic
fixture. A crash is simulated by copying the state directory while the first server still runs
(what a killed process leaves on disk) and starting a second server on the copy.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager

import httpx
import pytest
from conftest import topic_outcomes

from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.feedback import LOG_FILE, STATE_FILE
from routerzoo.serving.testing import FakeBackend, ServerThread

MATH = "Solve for x: 3x + 2 = 8."


@pytest.fixture(scope="module")
def bandit_dir(tmp_path_factory):
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers.kinds.linucb import LinUCBConfig
    from routerzoo.training.train import TrackingConfig, train_router

    root = tmp_path_factory.mktemp("feedback")
    data = save_dataset(make_dataset(topic_outcomes(30), name="topics", split=SplitSpec(val=0.1, test=0.1)), root / "d")
    return train_router("linucb", LinUCBConfig(offline="full"), data, root / "bandit",
                        tracking=TrackingConfig(enabled=False), progress=False).router_dir


@pytest.fixture(scope="module")
def encoder(bandit_dir):
    from routerzoo.routers import load_router

    r = load_router(bandit_dir)
    r.predict([MATH])
    return r.loaded_encoder


@pytest.fixture(scope="module")
def fakes():
    a = FakeBackend("A")
    with ServerThread(a) as ta:
        yield ta.url + "/v1"


def fresh_router(bandit_dir, encoder):
    """The artifact as a restarted process loads it (the encoder shared only to save seconds)."""
    from routerzoo.routers import load_router

    r = load_router(bandit_dir)
    r.set_encoder(encoder)
    return r


@contextmanager
def serving(router, url, state_dir=None, **feedback):
    backends = {m: {"base_url": url, "model": f"fake/{m}"} for m in router.models}
    overrides = {"backends": backends}
    if state_dir is not None:
        overrides["feedback"] = {"state_dir": str(state_dir), **feedback}
    app = create_app(load_config(None, overrides), router=router)
    with ServerThread(app) as server:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/ready").status_code != 200:
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.02)
        yield httpx.Client(base_url=server.url, timeout=30), app.state.routerzoo


def ask(http: httpx.Client, text: str = MATH) -> tuple[str, str]:
    r = http.post("/v1/chat/completions", json={"model": "routerzoo", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.headers["x-routerzoo-request-id"], r.headers["x-routerzoo-model"]


def test_feedback_changes_decisions(bandit_dir, encoder, fakes, tmp_path):
    router = fresh_router(bandit_dir, encoder)
    with serving(router, fakes, tmp_path / "fb", flush_every=4, flush_interval_s=60) as (http, state):
        first = ask(http)[1]
        chosen = [first]
        for _ in range(40):  # every answer is judged a failure: the bandit must move away from it
            rid, model = ask(http)
            chosen.append(model)
            if model != first:
                break
            r = http.post("/v1/feedback", json={"request_id": rid, "reward": 0.0})
            assert r.status_code == 200 and r.json()["model"] == model
        assert chosen[-1] != first, chosen
        assert (tmp_path / "fb" / STATE_FILE).exists()  # batches were learnt and saved


def test_restart_loses_no_reward(bandit_dir, encoder, fakes, tmp_path):
    state_dir = tmp_path / "fb"
    router = fresh_router(bandit_dir, encoder)
    base = router.counts_.sum()
    with serving(router, fakes, state_dir, flush_every=1000, flush_interval_s=3600) as (http, state):
        for reward in (1.0, 0.0, 0.5):
            rid, _ = ask(http)
            assert http.post("/v1/feedback", json={"request_id": rid, "reward": reward}).status_code == 200
        lines = (state_dir / LOG_FILE).read_text().splitlines()
        assert [json.loads(x)["reward"] for x in lines] == [1.0, 0.0, 0.5]
        assert state.feedback.router.counts_.sum() == base  # pending, not learnt yet
        crashed = tmp_path / "crashed"
        shutil.copytree(state_dir, crashed)  # the disk as a kill -9 now would leave it
    # graceful stop learnt the pending batch and saved it
    assert (state_dir / STATE_FILE).exists() and (state_dir / LOG_FILE).read_text() == ""
    # a restart after the crash replays the log: every accepted reward is learnt, once
    with serving(fresh_router(bandit_dir, encoder), fakes, crashed, flush_every=1000) as (http, state):
        assert state.feedback.router.counts_.sum() == base + 3
        assert (crashed / LOG_FILE).read_text() == ""
        rid, _ = ask(http)
        assert http.post("/v1/feedback", json={"request_id": rid, "reward": 1.0}).status_code == 200
    # and after a graceful restart on the cleanly stopped directory, too
    with serving(fresh_router(bandit_dir, encoder), fakes, crashed) as (http, state):
        assert state.feedback.router.counts_.sum() == base + 4


def test_feedback_errors(bandit_dir, encoder, fakes, tmp_path):
    with serving(fresh_router(bandit_dir, encoder), fakes, tmp_path / "fb") as (http, state):
        rid, _ = ask(http)

        def refused(body, status, param=None, raw=None):
            r = http.post("/v1/feedback", json=body) if raw is None else http.post("/v1/feedback", content=raw)
            assert r.status_code == status, r.text
            assert r.json()["error"]["param"] == param

        refused({"request_id": rid}, 400, "reward")
        refused({"request_id": rid, "reward": "good"}, 400, "reward")
        refused({"request_id": rid, "reward": 7.0}, 400, "reward")  # off the quality scale [0, 1]
        refused({"reward": 1.0}, 400, "request_id")
        refused({"request_id": "nope", "reward": 1.0}, 404, "request_id")
        refused(None, 400, raw=b"{not json")
        assert http.post("/v1/feedback", json={"request_id": rid, "reward": 1.0}).status_code == 200
        refused({"request_id": rid, "reward": 1.0}, 409, "request_id")
        assert http.get("/health").status_code == 200  # the server lives on
    with serving(fresh_router(bandit_dir, encoder), fakes) as (http, state):  # no feedback section
        r = http.post("/v1/feedback", json={"request_id": "x", "reward": 1.0})
        assert r.status_code == 404 and r.json()["error"]["code"] == "feedback_off"


def _state_version(path) -> str | None:
    from safetensors import safe_open

    if not path.exists():
        return None
    with safe_open(str(path), framework="numpy") as f:
        return (f.metadata() or {}).get("version")


def _until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_hot_reload_moves_feedback_to_the_new_version(bandit_dir, encoder, fakes, tmp_path):
    """Rewards teach the version that is served; after the alias moves, the learner follows the new
    version, which starts from its own trained state (v1's learnt state is kept aside, not restored)."""
    from routerzoo.serving.loader import load_for_serving
    from routerzoo.zoo import tracking
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def register() -> str:
        with tracking.run("feedback-reload", uri=uri):
            version = log_router_model(bandit_dir, registered_name="bandit").registered_model_version
        set_alias("bandit", "champion", version)
        return str(version)

    assert register() == "1"
    state_dir = tmp_path / "fb"
    models = fresh_router(bandit_dir, encoder).models
    cfg = load_config(None, {"router": "models:/bandit@champion", "tracking_uri": uri, "reload": {"poll_interval_s": 0.2},
                             "backends": {m: {"base_url": fakes} for m in models},
                             "feedback": {"state_dir": str(state_dir), "flush_every": 1}})
    loaded = load_for_serving(cfg.router, cfg)
    loaded.router.set_encoder(encoder)
    trained = loaded.router.counts_.sum()
    app = create_app(cfg, router=loaded)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        state = app.state.routerzoo
        _until(lambda: http.get("/ready").status_code == 200)
        rid, _ = ask(http)
        assert http.post("/v1/feedback", json={"request_id": rid, "reward": 0.0}).status_code == 200
        _until(lambda: _state_version(state_dir / STATE_FILE) == "bandit@1")
        assert state.feedback.router.counts_.sum() == trained + 1

        assert register() == "2"
        _until(lambda: http.get("/ready").json()["router"]["version"] == "2")
        assert state.feedback.router is state.holder.current.router and state.feedback.label == "bandit@2"
        assert state.feedback.router.counts_.sum() == trained  # v2 starts from its trained state
        assert _state_version(state_dir / "state-bandit@1.safetensors") == "bandit@1"
        rid, _ = ask(http)
        assert http.post("/v1/feedback", json={"request_id": rid, "reward": 1.0}).status_code == 200
        _until(lambda: _state_version(state_dir / STATE_FILE) == "bandit@2")
        assert state.feedback.router.counts_.sum() == trained + 1
