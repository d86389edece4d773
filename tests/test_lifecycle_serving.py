"""Policies registered in the zoo and served by alias, over real HTTP on loopback: a calibrated-cascade
artifact and an MDP router, each registered with ``zoo register``, served from
``cascade.policy: models:/NAME@champion`` behind two fake OpenAI-compatible backends and answered
through the official openai client; then the cascade's alias moves to a version with other
thresholds while requests keep coming, and the :class:`~routerzoo.serving.reload.PolicyWatcher`
swaps it in with no failed request.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np
import openai
import pytest
from test_serving_cascade import PRICES, LogprobBackend

from routerzoo.errors import ConfigError
from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence
from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.routers.policies.mdp import MDPConfig, MDPPolicy
from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.loader import load_for_serving
from routerzoo.serving.reload import PolicyWatcher
from routerzoo.serving.testing import ServerThread
from routerzoo.zoo.registry_ops import promote, register


@pytest.fixture(scope="module")
def fakes():
    small, big = LogprobBackend("small"), LogprobBackend("big")
    small.logprob = math.log(0.3)  # confidence 0.3: a cascade at threshold 0.5 escalates, at 0.2 accepts
    with ServerThread(small) as ts, ServerThread(big) as tb:
        yield {"small": (small, ts), "big": (big, tb)}


def _cascade(path, threshold: float):
    policy = CascadePolicy(CascadeConfig(chain=["small", "big"], thresholds=threshold), LogprobConfidence())
    policy.prices = PRICES
    return policy.save(path)


def _mdp(path, first: str):
    """An MDP router whose Q-network (all weights zero, biases chosen) calls ``first`` and accepts its answer."""
    m, p, h = 2, 2, 4
    b3 = np.array([1.0, 0.5, 0.0]) if first == "small" else np.array([1.0, 0.0, 0.5])
    params = {"pca_mean": np.zeros(384), "pca_components": np.zeros((p, 384)), "w1": np.zeros((h, p + 4 * m + 2)),
              "b1": np.zeros(h), "w2": np.zeros((h, h)), "b2": np.zeros(h), "w3": np.zeros((m + 1, h)), "b3": b3}
    return MDPPolicy(MDPConfig(models=["small", "big"], pca_dims=p, hidden=h), params).save(path)


def _settings(fakes, policy: str):
    backends = {m: {"base_url": t.url + "/v1", "model": f"fake/{m}", "prices": PRICES[m]} for m, (_, t) in fakes.items()}
    return load_config(None, {"backends": backends, "mode": "cascade", "retry": {"max_retries": 0},
                              "cascade": {"policy": policy}})


def _chat(url: str):
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    return client.chat.completions.with_raw_response.create(
        model="routerzoo", messages=[{"role": "user", "content": "What is two plus two?"}])


def _serve(settings):
    app = create_app(settings)
    server = ServerThread(app).start()
    for _ in range(1000):
        if httpx.get(server.url + "/ready").status_code == 200:
            break
    return app, server


@contextmanager
def _under_load(url: str, clients: int = 4):
    """``clients`` threads chatting with the server until the block ends: yields (answers, failures),
    the answers' texts in arrival order and every failed request's repr."""
    stop, answers, failures = threading.Event(), [], []

    def loop():
        while not stop.is_set():
            try:
                answers.append(_chat(url).parse().choices[0].message.content)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                failures.append(repr(exc))

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(loop)
        try:
            yield answers, failures
        finally:
            stop.set()


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for answers"
        time.sleep(0.01)


def test_mdp_router_served_by_alias(fakes, tmp_path):
    register(str(_mdp(tmp_path / "m1", "big")), "mdp-policy", alias="champion")
    app, server = _serve(_settings(fakes, "models:/mdp-policy@champion"))
    try:
        assert app.state.routerzoo.cascade.policy._encoder is not None  # warmed before /ready
        raw = _chat(server.url)
        assert raw.parse().choices[0].message.content == "answer from big"
        assert raw.headers["x-routerzoo-router"] == "mdp" and raw.headers["x-routerzoo-model"] == "big"
    finally:
        server.stop()
    # the same artifact named as a router: one line saying where it goes
    with pytest.raises(ConfigError, match="is a policy artifact \\(mdp\\), not a router: serve it with `mode: cascade`"):
        load_for_serving("models:/mdp-policy@champion", _settings(fakes, "models:/mdp-policy@champion"))


def test_cascade_served_by_alias_hot_reloads_under_load(fakes, tmp_path):
    v1 = register(str(_cascade(tmp_path / "c1", 0.5)), "calibrated", alias="champion")
    v2 = register(str(_cascade(tmp_path / "c2", 0.2)), "calibrated")
    settings = _settings(fakes, "models:/calibrated@champion")
    app, server = _serve(settings)
    cascade = app.state.routerzoo.cascade
    try:
        raw = _chat(server.url)
        assert raw.parse().choices[0].message.content == "answer from big"  # 0.3 < 0.5: escalated
        assert raw.headers["x-routerzoo-router"] == "cascade"

        watcher = PolicyWatcher(cascade, settings, version=str(v1))
        assert asyncio.run(watcher.check()) is False  # the alias has not moved
        with _under_load(server.url) as (answers, failures):
            _wait(lambda: len(answers) >= 8)
            promote(f"calibrated/{v2}", "champion")
            assert asyncio.run(watcher.check()) is True  # moved: loaded, checked, warmed, swapped
            seen = len(answers)
            _wait(lambda: len(answers) >= seen + 8)
        assert failures == []
        assert answers[0] == "answer from big" and answers[-1] == "answer from small"  # 0.3 >= 0.2: accepted
        assert watcher.version == str(v2) and cascade.policy.config.thresholds == [0.2]
        assert _chat(server.url).headers["x-routerzoo-model"] == "small"
    finally:
        server.stop()


def _serve_args(fakes, source: str, *extra: str):
    """``routerzoo serve SOURCE --backend ...`` parsed into a serve config, as the CLI does (no prices given)."""
    from routerzoo.cli import build_parser
    from routerzoo.serving.cli import build_config

    backends = [x for m, (_, t) in fakes.items() for x in ("--backend", f"{m}={t.url}/v1#fake/{m}")]
    return build_config(build_parser().parse_args(["serve", source, *backends, *extra]))


def test_bare_serve_of_a_policy_uses_cascade_mode_and_the_artifacts_prices(fakes, tmp_path):
    register(str(_cascade(tmp_path / "c", 0.2)), "bare-cascade", alias="champion")
    config = _serve_args(fakes, "models:/bare-cascade@champion", "--name", "zoo")
    assert config.mode == "cascade" and config.cascade.policy == "models:/bare-cascade@champion" and not config.router
    assert all(b.prices is None for b in config.backends.values())  # only the artifact knows prices
    app, server = _serve(config)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        raw = client.chat.completions.with_raw_response.create(
            model="zoo", messages=[{"role": "user", "content": "What is two plus two?"}])
        assert raw.parse().choices[0].message.content == "answer from small"  # 0.3 >= 0.2: accepted
        usage = raw.parse().usage
        expected = (usage.prompt_tokens * PRICES["small"]["input"] + usage.completion_tokens * PRICES["small"]["output"]) / 1e6
        assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(expected, rel=1e-6)
        assert json.loads(raw.headers["x-routerzoo-calls"])[0]["cost_usd"] == pytest.approx(expected, rel=1e-6)
        ready = httpx.get(server.url + "/ready").json()
        assert ready["cascade"]["policy"] == "cascade" and ready["cascade"]["version"] == "1"
    finally:
        server.stop()
    # an MDP router's folder: the same switch, read from its config.json
    config = _serve_args(fakes, str(_mdp(tmp_path / "m", "small")))
    assert config.mode == "cascade" and config.cascade.policy == str(tmp_path / "m")
    app, server = _serve(config)
    try:
        raw = _chat(server.url)
        assert raw.parse().choices[0].message.content == "answer from small"
        assert raw.headers["x-routerzoo-router"] == "mdp"
    finally:
        server.stop()
    # the config's router: the same switch
    (tmp_path / "serve.yaml").write_text(f"router: {tmp_path / 'm'}\n")
    config = _serve_args(fakes, f"--config={tmp_path / 'serve.yaml'}")
    assert config.mode == "cascade" and config.cascade.policy == str(tmp_path / "m") and not config.router
    # a router source is still served as a router (not switched)
    assert _serve_args(fakes, str(tmp_path / "missing")).mode == "route"


def test_alias_move_hot_reloads_the_served_policy_under_load(fakes, tmp_path):
    v1 = register(str(_cascade(tmp_path / "c1", 0.5)), "moving-cascade", alias="champion")
    v2 = register(str(_cascade(tmp_path / "c2", 0.2)), "moving-cascade")
    settings = _settings(fakes, "models:/moving-cascade@champion")
    settings.reload.poll_interval_s = 0.05  # the watcher the server starts itself, polling fast
    app, server = _serve(settings)
    state = app.state.routerzoo
    try:
        assert state.policy_watcher is not None and state.policy_watcher.version == str(v1)
        with _under_load(server.url) as (answers, failures):
            _wait(lambda: len(answers) >= 8)
            assert set(answers) == {"answer from big"}  # 0.3 < 0.5: escalated
            promote(f"moving-cascade/{v2}", "champion")
            _wait(lambda: answers[-4:] == ["answer from small"] * 4)  # 0.3 >= 0.2: accepted
        assert failures == []
        assert state.policy_watcher.version == str(v2) and state.cascade.policy.config.thresholds == [0.2]
        assert httpx.get(server.url + "/ready").json()["cascade"]["version"] == str(v2)
    finally:
        server.stop()


class _Accepting:
    """A scorer that accepts every answer (needs no logprobs)."""

    kind, needs_logprobs = "accept-all", False

    def predict(self, prompts, texts, lps):
        return np.ones(len(prompts))


def test_a_request_in_flight_keeps_the_policy_it_started_with(fakes, tmp_path):
    small, _ = fakes["small"]
    app, server = _serve(_settings(fakes, str(_cascade(tmp_path / "c", 0.5))))
    cascade = app.state.routerzoo.cascade
    try:
        small.script("slow:1.0")  # the first stage's answer arrives after the swap below
        before = small.count
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_chat, server.url)
            _wait(lambda: small.count > before)
            old = cascade.policy
            cascade.policy = CascadePolicy(CascadeConfig(chain=["small", "big"], thresholds=0.5), _Accepting())
            raw = pending.result()
        # scored by the old policy's scorer (0.3 < 0.5): escalated; the new one would have accepted small
        assert raw.parse().choices[0].message.content == "answer from big"
        assert json.loads(raw.headers["x-routerzoo-calls"])[0]["score"] == pytest.approx(0.3, abs=1e-6)
        assert _chat(server.url).parse().choices[0].message.content == "answer from small"  # the new one
        cascade.policy = old
    finally:
        small._script.clear()
        server.stop()


def test_ready_waits_for_the_mdp_encoder(fakes, tmp_path, monkeypatch):
    release = threading.Event()
    embed = MDPPolicy.embed

    def held(self, prompts):
        release.wait(30)
        return embed(self, prompts)

    monkeypatch.setattr(MDPPolicy, "embed", held)
    app = create_app(_settings(fakes, str(_mdp(tmp_path / "m", "big"))))
    server = ServerThread(app).start()
    try:
        time.sleep(0.3)
        assert httpx.get(server.url + "/ready").status_code == 503  # the encoder is still loading
        with pytest.raises(openai.APIStatusError) as err:
            _chat(server.url)
        assert err.value.status_code == 503
        release.set()
        _wait(lambda: httpx.get(server.url + "/ready").status_code == 200)
        assert app.state.routerzoo.cascade.policy._encoder is not None  # warmed before /ready said so
        assert _chat(server.url).parse().choices[0].message.content == "answer from big"
    finally:
        release.set()
        server.stop()
