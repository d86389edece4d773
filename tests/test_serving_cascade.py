"""The server in cascade mode over real HTTP on loopback: two fake OpenAI-compatible backends that
return token logprobs (a "small" one whose confidence each test sets, a "big" one), the official
openai client on the user's side, no router at all.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import httpx
import openai
import pytest

from routerzoo.errors import ConfigError
from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.testing import FakeBackend, ServerThread

PRICES = {"small": {"input": 1.0, "output": 2.0}, "big": {"input": 10.0, "output": 20.0}}


class LogprobBackend(FakeBackend):
    """A fake backend whose every answer token has log-probability ``logprob`` (when asked for logprobs)."""

    def __init__(self, name: str, logprob: float = -0.05):
        super().__init__(name)
        self.logprob = logprob
        self.samples: list[str] = []  # texts of the n choices when a request asks for n > 1

    def _completion(self, request: dict, chat: bool) -> dict:
        out = super()._completion(request, chat)
        tokens = ["answer", " from", f" {self.name}"]
        if chat and request.get("logprobs"):
            out["choices"][0]["logprobs"] = {"content": [
                {"token": t, "logprob": self.logprob, "bytes": None, "top_logprobs": []} for t in tokens]}
        elif not chat and request.get("logprobs") is not None:
            out["choices"][0]["logprobs"] = {"tokens": tokens, "token_logprobs": [self.logprob] * 3,
                                             "top_logprobs": None, "text_offset": [0, 6, 11]}
        n = request.get("n") or 1
        if chat and n > 1:
            out["choices"] = [{"index": i, "message": {"role": "assistant", "content": self.samples[i % len(self.samples)]},
                               "finish_reason": "stop"} for i in range(n)]
        return out


@pytest.fixture(scope="module")
def fakes():
    small, big = LogprobBackend("small"), LogprobBackend("big")
    with ServerThread(small) as ts, ServerThread(big) as tb:
        yield {"small": (small, ts), "big": (big, tb)}


@pytest.fixture(autouse=True)
def _reset(fakes):
    for backend, _ in fakes.values():
        backend.mode, backend.logprob, backend.samples = "ok", -0.05, []
        backend._script.clear()
        backend.received.clear()
    yield


def settings(fakes, threshold: float = 0.5, scorer: str = "logprob-confidence", **extra):
    backends = {m: {"base_url": t.url + "/v1", "model": f"fake/{m}", "prices": PRICES[m]} for m, (_, t) in fakes.items()}
    return load_config(None, {"backends": backends, "mode": "cascade", "retry": {"max_retries": 0},
                              "cascade": {"chain": ["small", "big"], "thresholds": threshold,
                                          "scorer": scorer}, **extra})


@contextmanager
def cascade_server(fakes, **kw):
    app = create_app(settings(fakes, **kw))
    with ServerThread(app) as server:
        for _ in range(500):
            if httpx.get(server.url + "/ready").status_code == 200:
                break
        yield server.url


def chat(url: str, **kw):
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    return client.chat.completions.with_raw_response.create(
        model="routerzoo", messages=[{"role": "user", "content": "What is two plus two?"}], **kw)


def usd(model: str, prompt_tokens: int = 5, completion_tokens: int = 3) -> float:
    return (prompt_tokens * PRICES[model]["input"] + completion_tokens * PRICES[model]["output"]) / 1e6


def test_low_confidence_escalates_to_the_second_backend_with_calls_and_summed_cost(fakes):
    fakes["small"][0].logprob = math.log(0.3)  # confidence 0.3 < 0.5
    with cascade_server(fakes) as url:
        raw = chat(url)
        metrics = httpx.get(url + "/metrics").text
        ready = httpx.get(url + "/ready").json()
    answer = raw.parse()
    assert answer.choices[0].message.content == "answer from big" and answer.model == "big"
    assert raw.headers["x-routerzoo-model"] == "big"
    calls = json.loads(raw.headers["x-routerzoo-calls"])
    assert [c["model"] for c in calls] == ["small", "big"]
    assert calls[0]["score"] == pytest.approx(0.3) and calls[0]["accepted"] is False and calls[1]["accepted"] is True
    assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(usd("small") + usd("big"))
    sent_small, sent_big = fakes["small"][0].received[-1], fakes["big"][0].received[-1]
    assert sent_small["logprobs"] is True and sent_small["model"] == "fake/small" and "stream" not in sent_small
    assert "logprobs" not in sent_big  # the last stage is not scored: the client's own request
    assert 'routerzoo_cascade_deferrals_total{model="small",reason="below_threshold",stage="0"} 1.0' in metrics
    assert 'routerzoo_cascade_accepted_total{model="big",stage="1"} 1.0' in metrics
    assert ready == {"status": "ready", "cascade": {"chain": ["small", "big"], "thresholds": [0.5],
                                                    "scorer": "logprob-confidence"}}


def test_confident_first_answer_is_accepted_and_the_second_backend_never_called(fakes):
    fakes["small"][0].logprob = math.log(0.9)
    with cascade_server(fakes) as url:
        raw = chat(url)
    answer = raw.parse()
    assert answer.choices[0].message.content == "answer from small" and raw.headers["x-routerzoo-model"] == "small"
    assert answer.choices[0].logprobs is None  # the client did not ask for them
    assert [c["model"] for c in json.loads(raw.headers["x-routerzoo-calls"])] == ["small"]
    assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(usd("small"))
    assert len(fakes["big"][0].received) == 0


def test_streaming_replays_an_accepted_early_answer_and_streams_the_last_stage(fakes):
    with cascade_server(fakes) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
        msgs = [{"role": "user", "content": "hi"}]
        fakes["small"][0].logprob = math.log(0.9)
        early = client.chat.completions.create(model="routerzoo", messages=msgs, stream=True,
                                               stream_options={"include_usage": True})
        chunks = list(early)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "answer from small"
        assert chunks[-1].usage.completion_tokens == 3
        fakes["small"][0].logprob = math.log(0.1)
        with client.chat.completions.with_streaming_response.create(model="routerzoo", messages=msgs,
                                                                    stream=True) as resp:
            assert resp.headers["x-routerzoo-model"] == "big"
            assert [c["model"] for c in json.loads(resp.headers["x-routerzoo-calls"])] == ["small", "big"]
            assert float(resp.headers["x-routerzoo-cost-usd-before-stream"]) == pytest.approx(usd("small", 1))
            text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
        assert text == "answer from big"
        assert fakes["small"][0].received[-1].get("stream") is None  # early stages are buffered
        assert fakes["big"][0].received[-1]["stream"] is True


def test_failed_early_stage_escalates_and_failed_last_stage_returns_the_rejected_answer(fakes):
    with cascade_server(fakes) as url:
        fakes["small"][0].mode = "500"
        raw = chat(url)
        assert raw.headers["x-routerzoo-model"] == "big"
        assert json.loads(raw.headers["x-routerzoo-calls"])[0] == {"model": "small", "error": "status_500"}
        fakes["small"][0].mode, fakes["small"][0].logprob = "ok", math.log(0.2)
        fakes["big"][0].mode = "500"
        raw = chat(url)
        assert raw.parse().choices[0].message.content == "answer from small"
        assert [c.get("error") for c in json.loads(raw.headers["x-routerzoo-calls"])] == [None, "status_500"]
        fakes["small"][0].mode = "500"
        with pytest.raises(openai.APIStatusError) as info:
            chat(url)
        assert info.value.status_code == 502 and "no cascade stage could answer" in info.value.message
        metrics = httpx.get(url + "/metrics").text
    assert 'routerzoo_cascade_deferrals_total{model="small",reason="backend_failed",stage="0"} 2.0' in metrics


def test_completions_endpoint_asks_for_integer_logprobs_and_backend_names_bypass_the_cascade(fakes):
    fakes["small"][0].logprob = math.log(0.3)
    with cascade_server(fakes, threshold=0.2) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "routerzoo", "prompt": "2+2=", "max_tokens": 3})
        direct = httpx.post(url + "/v1/completions", json={"model": "big", "prompt": "2+2="})
        bad = httpx.post(url + "/v1/completions", json={"model": "routerzoo", "prompt": "x",
                                                         "routerzoo": {"cost_weight": 1}})
    assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "small"
    assert fakes["small"][0].received[0]["logprobs"] == 1 and r.json()["choices"][0]["logprobs"] is None
    assert direct.headers["x-routerzoo-model"] == "big" and "x-routerzoo-calls" not in direct.headers
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "routerzoo"


def test_config_errors_are_one_clear_line(fakes, tmp_path):
    with pytest.raises(ConfigError, match="needs a cascade section"):
        load_config(None, {"mode": "cascade"})
    with pytest.raises(ConfigError, match=r"model\(s\) \['huge'\] have no backend"):
        settings(fakes, cascade={"chain": ["small", "huge"], "thresholds": 0.5})
    with pytest.raises(ConfigError, match="thresholds: 2 given for a chain of 2"):
        settings(fakes, cascade={"chain": ["small", "big"], "thresholds": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="mode must be one of"):
        load_config(None, {"mode": "cascades"})
    from routerzoo.errors import UserError
    from routerzoo.routers.deferral.artifact import resolve_deferral

    with pytest.raises(UserError, match="neither a deferral kind"):
        resolve_deferral(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="unknown field"):
        resolve_deferral("logprob-confidence", {"statistc": "min"})


def test_consistency_scorer_samples_n_answers_and_returns_one(fakes):
    small = fakes["small"][0]
    with cascade_server(fakes, threshold=0.6, scorer="consistency") as url:
        small.samples = ["The answer is (A)", "answer is A", "The answer is (A).", "The answer is (B)", "A"]
        raw = chat(url)
        assert raw.headers["x-routerzoo-model"] == "small"
        assert len(raw.parse().choices) == 1 and raw.parse().choices[0].message.content == "The answer is (A)"
        assert json.loads(raw.headers["x-routerzoo-calls"])[0]["score"] == pytest.approx(0.75)
        sent = small.received[-1]
        assert sent["n"] == 5 and sent["temperature"] == 0.7 and "logprobs" not in sent
        small.samples = ["The answer is (A)", "The answer is (C)", "The answer is (B)", "(D)", "(A)"]
        raw = chat(url)
    assert raw.headers["x-routerzoo-model"] == "big"
    assert json.loads(raw.headers["x-routerzoo-calls"])[0]["score"] == pytest.approx(0.25)


def test_a_trained_scorer_artifact_drives_the_cascade(fakes, tmp_path):
    from cascade_data import cascade_table

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.routers.deferral.token_quantile import TokenQuantileConfig
    from routerzoo.training.train_deferral import train_deferral

    data = save_dataset(make_dataset(cascade_table(90), name="c"), tmp_path / "ds")
    _, path, _ = train_deferral("token-quantile", TokenQuantileConfig(model="small"), data, tmp_path / "tq")
    with cascade_server(fakes, scorer=str(path)) as url:
        fakes["small"][0].logprob = math.log(0.95)
        sure = chat(url)
        fakes["small"][0].logprob = math.log(0.2)
        unsure = chat(url)
        ready = httpx.get(url + "/ready").json()
    assert sure.headers["x-routerzoo-model"] == "small" and unsure.headers["x-routerzoo-model"] == "big"
    assert ready["cascade"]["scorer"] == "token-quantile"


def test_the_mdp_router_is_served_by_the_same_sequential_path(fakes, tmp_path):
    from cascade_data import cascade_table

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.routers.policies.mdp import MDPConfig
    from routerzoo.training.mdp import train_mdp

    df = cascade_table(90)
    df = df[df["model"].isin(["small", "large"])].replace({"model": {"large": "big"}})
    data = save_dataset(make_dataset(df, name="two"), tmp_path / "ds")
    fast = {"epochs": 25, "iterations": 2, "hidden": 32, "pca_dims": 8, "batch_size": 32}
    thrifty = train_mdp(MDPConfig(cost_weight=3000.0, **fast), data, tmp_path / "thrifty")[1]
    lavish = train_mdp(MDPConfig(cost_weight=0.0, **fast), data, tmp_path / "lavish")[1]
    for path, want in ((thrifty, "small"), (lavish, "big")):
        app = create_app(load_config(None, {
            "backends": {m: {"base_url": t.url + "/v1", "prices": PRICES[m]} for m, (_, t) in fakes.items()},
            "mode": "cascade", "cascade": {"policy": str(path)}}))
        before = len(fakes["big"][0].received)
        with ServerThread(app) as server:
            for _ in range(3000):
                if httpx.get(server.url + "/ready").status_code == 200:
                    break
            raw = chat(server.url)
        calls = json.loads(raw.headers["x-routerzoo-calls"])
        assert raw.headers["x-routerzoo-router"] == "mdp" and raw.headers["x-routerzoo-model"] == want
        assert calls[-1]["model"] == want and calls[-1]["accepted"] is True
        assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(sum(usd(c["model"]) for c in calls))
        if want == "small":
            assert [c["model"] for c in calls] == ["small"] and len(fakes["big"][0].received) == before
    with pytest.raises(ConfigError, match="not both"):
        settings(fakes, cascade={"chain": ["small", "big"], "policy": str(lavish)})


def test_scorer_runs_only_in_the_prediction_thread_and_is_warm_before_ready(fakes, monkeypatch):
    """The scorer (a learned one runs an encoder, which is not thread-safe) is called from the server's one
    prediction thread, never from a pool, and already once before /ready says 200."""
    import threading

    from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence

    threads: list[str] = []
    original = LogprobConfidence.predict

    def spy(self, *args, **kw):
        threads.append(threading.current_thread().name)
        return original(self, *args, **kw)

    monkeypatch.setattr(LogprobConfidence, "predict", spy)
    app = create_app(settings(fakes))
    with ServerThread(app) as server:
        for _ in range(500):
            if httpx.get(server.url + "/ready").status_code == 200:
                break
        assert threads, "the scorer was not warmed before /ready"
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        for _ in range(4):
            c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": "hi"}])
    assert len(threads) >= 5 and all(t.startswith("routerzoo-predict") for t in threads), threads
