"""Policies registered in the zoo and served by alias, over real HTTP on loopback: a calibrated-cascade
artifact and an MDP router, each registered with ``zoo register``, served from
``cascade.policy: models:/NAME@champion`` behind two fake OpenAI-compatible backends and answered
through the official openai client; then the cascade's alias moves to a version with other
thresholds while requests keep coming, and the :class:`~routerzoo.serving.reload.PolicyWatcher`
swaps it in with no failed request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from test_serving_cascade import PRICES, LogprobBackend

from routerzoo.errors import ConfigError
from routerzoo.routers.logprob_confidence import LogprobConfidence
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


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for answers"
        time.sleep(0.01)


def test_mdp_router_served_by_alias(fakes, tmp_path):
    register(str(_mdp(tmp_path / "m1", "big")), "mdp-policy", alias="champion")
    app, server = _serve(_settings(fakes, "models:/mdp-policy@champion"))
    try:
        # /ready does not yet wait for the policy's encoder (serving hardening, issue 19): warm it here
        app.state.routerzoo.cascade.policy.begin("warm-up")
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
        stop, answers, failures = threading.Event(), [], []

        def load_loop():
            while not stop.is_set():
                try:
                    r = _chat(server.url)
                    answers.append(r.parse().choices[0].message.content)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                    failures.append(repr(exc))

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(load_loop)
            _wait(lambda: len(answers) >= 8)
            promote(f"calibrated/{v2}", "champion")
            assert asyncio.run(watcher.check()) is True  # moved: loaded, checked, warmed, swapped
            seen = len(answers)
            _wait(lambda: len(answers) >= seen + 8)
            stop.set()
        assert failures == []
        assert answers[0] == "answer from big" and answers[-1] == "answer from small"  # 0.3 >= 0.2: accepted
        assert watcher.version == str(v2) and cascade.policy.config.thresholds == [0.2]
        assert _chat(server.url).headers["x-routerzoo-model"] == "small"
    finally:
        server.stop()
