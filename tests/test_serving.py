"""The router server over real HTTP on loopback: fake OpenAI-compatible backends, the official openai
client on the user's side, a kNN router trained on the topic fixture.

Every test starts the servers it needs (uvicorn in threads, or processes where a backend must die for
real) on 127.0.0.1 and stops them; request counts are bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
from conftest import topic_outcomes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.testing import FakeBackend, ServerThread

MATH = "Solve for x: 3x + 2 = 8."
HISTORY = "Who signed the treaty concluded in the year 1648?"
CHEAP = {"routerzoo": {"cost_weight": 1e4}}  # quality − 1e4·cost: the cheap specialist wins on its topic


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def knn_dir(tmp_path_factory):
    """A kNN router trained (no tracking) on the topic dataset: math-small / history-small / big."""
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    root = tmp_path_factory.mktemp("serving")
    ds = make_dataset(topic_outcomes(), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True))
    data = save_dataset(ds, root / "topics")
    result = train_router("knn", KNNConfig(k=5), data, root / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    return result.router_dir


@pytest.fixture(scope="session")
def router(knn_dir):
    """The loaded router, shared so its encoder loads once per session (servers run one at a time)."""
    from routerzoo.routers import load_router

    r = load_router(knn_dir)
    r.predict([MATH])
    return r


@pytest.fixture(scope="module")
def fakes():
    """Two fake backends: A serves math-small and history-small, B serves big."""
    a, b = FakeBackend("A"), FakeBackend("B")
    with ServerThread(a) as ta, ServerThread(b) as tb:
        yield {"A": (a, ta), "B": (b, tb)}


@pytest.fixture(autouse=True)
def _reset_fakes(request):
    if "fakes" in request.fixturenames:
        for backend, _ in request.getfixturevalue("fakes").values():
            backend.mode = "ok"
            backend._script.clear()
            backend.received.clear()
    yield


def backends_for(fakes, only=("math-small", "history-small", "big")) -> dict:
    where = {"math-small": "A", "history-small": "A", "big": "B"}
    return {m: {"base_url": fakes[where[m]][1].url + "/v1", "model": f"fake/{m}"} for m in only}


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{url} not ready after {timeout} s")


@contextmanager
def serving(router, fakes, **overrides):
    """The router server on loopback; yields (url, ServerState)."""
    overrides.setdefault("backends", backends_for(fakes))
    cfg = load_config(None, overrides)
    app = create_app(cfg, router=router)
    with ServerThread(app) as server:
        wait_ready(server.url)
        yield server.url, app.state.routerzoo


def client(url: str, **kw) -> openai.OpenAI:
    kw.setdefault("api_key", "unused")
    return openai.OpenAI(base_url=url + "/v1", max_retries=0, timeout=30, **kw)


def chat_body(text: str = MATH, **extra) -> dict:
    return {"model": "routerzoo", "messages": [{"role": "user", "content": text}], **extra}


def metric(state, name: str, **labels) -> float:
    value = state.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


# -- the user's side: the openai client -------------------------------------------------------------
def test_openai_client_chat_routes_by_topic_with_headers(router, fakes):
    a, b = fakes["A"][0], fakes["B"][0]
    with serving(router, fakes, backends={**backends_for(fakes), "big": {
            "base_url": fakes["B"][1].url + "/v1", "model": "fake/big", "prices": {"input": 10.0, "output": 30.0}}}) as (url, state):
        c = client(url)
        raw = c.chat.completions.with_raw_response.create(model="routerzoo", messages=[{"role": "user", "content": MATH}],
                                                          extra_body=CHEAP)
        done = raw.parse()
        assert done.model == "math-small" and done.choices[0].message.content == "answer from A"
        assert raw.headers["x-routerzoo-model"] == "math-small"
        scores = json.loads(raw.headers["x-routerzoo-scores"])
        assert set(scores) == {"math-small", "history-small", "big"} and scores["math-small"] > scores["history-small"]
        assert " " not in raw.headers["x-routerzoo-scores"]  # compact
        assert len(raw.headers["x-routerzoo-request-id"]) == 32
        sent = a.received[-1]
        assert sent["model"] == "fake/math-small" and "routerzoo" not in sent

        hist = c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": HISTORY}], extra_body=CHEAP)
        assert hist.model == "history-small" and a.received[-1]["model"] == "fake/history-small"

        # big has a price table (from its backend's config): the cost comes from usage × prices
        raw = c.chat.completions.with_raw_response.create(model="big", messages=[{"role": "user", "content": HISTORY}])
        assert raw.parse().model == "big" and b.received[-1]["model"] == "fake/big"
        usage = raw.parse().usage
        expected = (usage.prompt_tokens * 10.0 + usage.completion_tokens * 30.0) / 1e6
        assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(expected, rel=1e-6)
        assert metric(state, "routerzoo_estimated_cost_usd_total", model="big") == pytest.approx(expected, rel=1e-6)
        assert metric(state, "routerzoo_decisions_total", model="math-small") == 1


def test_openai_client_streaming_relays_chunks(router, fakes):
    with serving(router, fakes) as (url, state):
        c = client(url)
        chunks = list(c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": HISTORY}],
                                                stream=True, stream_options={"include_usage": True}, extra_body=CHEAP))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "answer from A"
        assert {ch.model for ch in chunks} == {"history-small"}
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        assert metric(state, "routerzoo_tokens_total", model="history-small", kind="completion") == 3


def test_tools_and_other_fields_pass_through_unchanged(router, fakes):
    a = fakes["A"][0]
    tools = [{"type": "function", "function": {"name": "add", "description": "add two numbers", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}]
    with serving(router, fakes) as (url, _):
        c = client(url)
        done = c.chat.completions.create(
            model="routerzoo", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": MATH}],
            tools=tools, tool_choice="auto", temperature=0.3, top_p=0.9, n=1, stop=["\n\n"], max_tokens=20,
            logprobs=True, response_format={"type": "text"}, seed=7, extra_body={**CHEAP, "vendor_field": {"x": [1, 2]}})
        assert done.choices[0].message.tool_calls[0].function.name == "add"
        sent = a.received[-1]
        assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["temperature"] == 0.3
        assert sent["stop"] == ["\n\n"] and sent["logprobs"] is True and sent["seed"] == 7
        assert sent["response_format"] == {"type": "text"} and sent["vendor_field"] == {"x": [1, 2]}
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert "routerzoo" not in sent and sent["model"] == "fake/math-small"


def test_completions_models_and_direct_backend(router, fakes):
    b = fakes["B"][0]
    with serving(router, fakes, name="auto") as (url, _):
        c = client(url)
        assert [m.id for m in c.models.list()] == ["auto", "math-small", "history-small", "big"]
        done = c.completions.create(model="auto", prompt=MATH, extra_body=CHEAP)
        assert done.model == "math-small" and done.choices[0].text == "answer from A"
        raw = c.chat.completions.with_raw_response.create(model="big", messages=[{"role": "user", "content": MATH}])
        assert raw.parse().model == "big" and raw.headers["x-routerzoo-model"] == "big"
        assert "x-routerzoo-scores" not in raw.headers  # addressed directly: no routing
        assert b.received[-1]["model"] == "fake/big"


def test_unknown_model_is_404_in_openai_shape(router, fakes):
    with serving(router, fakes) as (url, _):
        with pytest.raises(openai.NotFoundError) as err:
            client(url).chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
        assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(model="routerzoo@cost=5"))
        assert r.status_code == 404  # options never come from the model name
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_profiles_and_routing_options(router, fakes):
    profiles = {"cheap": {"cost_weight": 1e4}, "weak-only": {"strong": "big", "weak": "math-small", "threshold": 5.0}}
    with serving(router, fakes, profiles=profiles) as (url, _):
        c = client(url)

        def model(text, options):
            return c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": text}],
                                             extra_body={"routerzoo": options}).model

        assert model(HISTORY, {"profile": "cheap"}) == "history-small"
        assert model(HISTORY, {"profile": "weak-only"}) == "math-small"  # margin never reaches 5
        assert model(HISTORY, {"threshold": -5.0}) == "big"  # strong / weak: the dearest and cheapest
        assert model(HISTORY, {"profile": "weak-only", "threshold": -5.0}) == "big"  # the request overrides
        for options, param in (({"cost_weight": -1}, "routerzoo.cost_weight"), ({"profile": "nope"}, "routerzoo.profile"),
                               ({"bogus": 1}, "routerzoo.bogus"), ({"strong": "gpt-9"}, "routerzoo.strong"),
                               ({"cost_weight": 1, "threshold": 0.1}, "routerzoo")):
            with pytest.raises(openai.BadRequestError) as err:
                model(MATH, options)
            assert err.value.body["param"] == param, options


def test_restrict_to_backends_routes_among_candidates_with_one(router, fakes):
    with serving(router, fakes, backends=backends_for(fakes, only=("math-small", "big")), restrict_to_backends=True) as (url, _):
        c = client(url)
        seen = {c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": t}], extra_body=CHEAP).model
                for t in (HISTORY, MATH, "Describe the causes of the war that began in 1914.")}
        assert "history-small" not in seen and seen <= {"math-small", "big"}
        raw = c.chat.completions.with_raw_response.create(model="routerzoo", messages=[{"role": "user", "content": MATH}])
        assert set(json.loads(raw.headers["x-routerzoo-scores"])) == {"math-small", "big"}  # only what it can route to


# -- limits, auth, malformed input ------------------------------------------------------------------
def test_api_keys_401_and_health_open(router, fakes, monkeypatch):
    monkeypatch.setenv("RZ_TEST_KEYS", "key-one, key-two")
    hashed = hashlib.sha256(b"key-three").hexdigest()
    with serving(router, fakes, auth={"api_keys_env": "RZ_TEST_KEYS", "api_key_sha256": [hashed]}) as (url, _):
        for bad in ("wrong", "key-one "[:-2]):
            with pytest.raises(openai.AuthenticationError):
                client(url, api_key=bad).chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}])
        r = httpx.get(url + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        for key in ("key-one", "key-two", "key-three"):
            assert client(url, api_key=key).chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}]).model == "big"
        assert httpx.get(url + "/health").status_code == 200


def test_body_limit_413_and_in_flight_cap_429(router, fakes):
    b = fakes["B"][0]
    with serving(router, fakes, limits={"max_body_bytes": 2000, "max_in_flight": 1}) as (url, _):
        big_body = chat_body("x" * 5000)
        r = httpx.post(url + "/v1/chat/completions", json=big_body)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        # no content-length (chunked): cut off while reading
        r = httpx.post(url + "/v1/chat/completions", content=iter([json.dumps(big_body).encode()[i:i + 500] for i in range(0, 5200, 500)]))
        assert r.status_code == 413

        b.script("slow:1.0")
        slow = threading.Thread(target=lambda: httpx.post(url + "/v1/chat/completions", json=chat_body(model="big"), timeout=10))
        slow.start()
        time.sleep(0.3)
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(model="big"))
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error" and r.headers["retry-after"] == "1"
        slow.join()
        assert httpx.post(url + "/v1/chat/completions", json=chat_body(model="big")).status_code == 200


BAD_BODIES = [
    (b"{not json", None), (b"[1, 2]", None), (b'"text"', None), (b"", None), (b"\xff\xfe", None),
    (b'{"model": "routerzoo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "model"),
    (json.dumps({"model": 5, "messages": []}).encode(), "model"),
    (json.dumps({"model": "routerzoo"}).encode(), "messages"),
    (json.dumps({"model": "routerzoo", "messages": "hi"}).encode(), "messages"),
    (json.dumps({"model": "routerzoo", "messages": []}).encode(), "messages"),
    (json.dumps({"model": "routerzoo", "messages": ["hi"]}).encode(), "messages[0]"),
    (json.dumps({"model": "routerzoo", "messages": [{"content": "hi"}]}).encode(), "messages[0].role"),
    (json.dumps({"model": "routerzoo", "messages": [{"role": "user", "content": 5}]}).encode(), "messages[0].content"),
    (json.dumps({"model": "routerzoo", "messages": [{"role": "user", "content": [1]}]}).encode(), "messages[0].content[0]"),
    (json.dumps({"model": "routerzoo", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}).encode(), "stream"),
    (json.dumps({"model": "routerzoo", "routerzoo": [1], "messages": [{"role": "user", "content": "hi"}]}).encode(), "routerzoo"),
]


def test_malformed_bodies_are_4xx_in_openai_shape(router, fakes):
    with serving(router, fakes) as (url, _):
        with httpx.Client(base_url=url) as h:
            for body, param in BAD_BODIES:
                r = h.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400, (body, r.text)
                error = r.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
                assert error["param"] == param, (body, error)
            r = h.post("/v1/completions", json={"model": "routerzoo", "prompt": {"a": 1}})
            assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
            assert h.get("/v1/nowhere").status_code == 404 and "error" in h.get("/v1/nowhere").json()
            assert h.get("/v1/chat/completions").status_code == 405


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_valid = {"model": "routerzoo", "messages": [{"role": "user", "content": "Solve 2x = 4"}], "routerzoo": {"cost_weight": 1}}


@st.composite
def _mutated(draw):
    body = json.loads(json.dumps(_valid))
    for _ in range(draw(st.integers(1, 3))):
        messages = body.get("messages")
        targets = [body, messages[0] if isinstance(messages, list) and messages else None, body.get("routerzoo")]
        obj = draw(st.sampled_from([t for t in targets if isinstance(t, dict)]))
        key = draw(st.sampled_from(sorted(obj) + ["stream", "prompt", "n", "profile", "threshold"]))
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(_json)
    return json.dumps(body).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_mutated(), _json.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
       endpoint=st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
def test_random_and_mutated_bodies_never_5xx(fuzz_server, body, endpoint):
    r = fuzz_server.post(endpoint, content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def fuzz_server(router, fakes):
    with serving(router, fakes) as (url, _), httpx.Client(base_url=url, timeout=30) as h:
        yield h
        assert h.get("/health").status_code == 200  # still up after everything


# -- upstream failures --------------------------------------------------------------------------------
def test_retries_on_500_and_429_with_retry_after(router, fakes):
    b = fakes["B"][0]
    with serving(router, fakes, retry={"backoff_s": 0.01}) as (url, state):
        c = client(url)
        b.script("500", "500")
        assert c.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}]).model == "big"
        assert metric(state, "routerzoo_retries_total", model="big") == 2
        assert metric(state, "routerzoo_upstream_errors_total", model="big", reason="status_500") == 2

        b.script("429:0.4")
        t0 = time.monotonic()
        assert c.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}]).model == "big"
        assert time.monotonic() - t0 >= 0.35  # Retry-After honoured

        b.script("429:30")  # beyond retry_after_max_s: no waiting; addressed directly, so no fallback either
        t0 = time.monotonic()
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}])
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("fault", ["garbage", "drop", "slow:3"])
def test_bad_answers_are_retried(router, fakes, fault):
    a = fakes["A"][0]
    backends = backends_for(fakes)
    backends["math-small"]["timeout_s"] = 1.0
    with serving(router, fakes, backends=backends, retry={"backoff_s": 0.01}) as (url, state):
        a.script(fault)
        done = client(url).chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": MATH}], extra_body=CHEAP)
        assert done.model == "math-small" and done.choices[0].message.content == "answer from A"
        assert metric(state, "routerzoo_retries_total", model="math-small") == 1


def test_fallback_then_cooldown_then_probe(router, fakes):
    a = fakes["A"][0]
    cfg = {"retry": {"max_retries": 0}, "cooldown": {"failures": 2, "cooldown_s": 0.5}}
    with serving(router, fakes, **cfg) as (url, state):
        c = client(url)
        a.mode = "500"
        for _ in range(3):  # math-small fails, history-small (same dead box) fails, big answers
            raw = c.chat.completions.with_raw_response.create(model="routerzoo", messages=[{"role": "user", "content": MATH}],
                                                              extra_body=CHEAP)
            assert raw.parse().model == "big"
        assert metric(state, "routerzoo_fallbacks_total", from_model="math-small", to_model="history-small") >= 1
        assert metric(state, "routerzoo_backends_in_cooldown") == 2
        seen = a.count
        assert c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": MATH}], extra_body=CHEAP).model == "big"
        assert a.count == seen  # cooling down: not even tried

        a.mode = "ok"
        time.sleep(0.6)
        models = []
        for _ in range(20):  # the first request after the cooldown starts a probe; it succeeds; traffic returns
            models.append(c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": MATH}],
                                                    extra_body=CHEAP).model)
            if models[-1] == "math-small":
                break
            time.sleep(0.05)
        assert models[-1] == "math-small", models
        assert metric(state, "routerzoo_backends_in_cooldown") <= 1


def test_stream_fails_over_before_first_byte_and_errors_after(router, fakes):
    a = fakes["A"][0]
    with serving(router, fakes, retry={"max_retries": 0}) as (url, state):
        a.script("500")  # before the first byte: the next model answers the stream
        with httpx.stream("POST", url + "/v1/chat/completions", json=chat_body(MATH, stream=True, **CHEAP)) as r:
            assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "history-small"
            assert b"data: [DONE]" in r.read()

        a.script("broken_stream")  # after it started: the stream ends with an error event
        c = client(url)
        got = []
        with pytest.raises(openai.APIError, match="broke"):
            for chunk in c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": MATH}],
                                                   stream=True, extra_body=CHEAP):
                got.append(chunk.choices[0].delta.content)
        assert got[:2] == ["answer", " from"]
        assert metric(state, "routerzoo_upstream_errors_total", model="math-small", reason="stream_broken") == 1
        assert httpx.get(url + "/health").status_code == 200


def test_all_backends_down_is_502_not_500(router, fakes):
    a, b = fakes["A"][0], fakes["B"][0]
    with serving(router, fakes, retry={"max_retries": 0}) as (url, _):
        a.mode = b.mode = "500"
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(MATH))
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_failed"
        assert "math-small" in r.json()["error"]["message"] and "big" in r.json()["error"]["message"]


# -- metrics, readiness, shutdown -----------------------------------------------------------------------
def test_metrics_endpoint(router, fakes):
    from prometheus_client.parser import text_string_to_metric_families

    with serving(router, fakes) as (url, _):
        c = client(url)
        for text in (MATH, HISTORY):
            c.chat.completions.create(model="routerzoo", messages=[{"role": "user", "content": text}], extra_body=CHEAP)
        httpx.post(url + "/v1/chat/completions", content=b"{")
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(url + "/metrics").text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        assert samples[("routerzoo_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "200")))] == 2
        assert samples[("routerzoo_requests_total", (("endpoint", "/v1/chat/completions"), ("status", "400")))] == 1
        assert samples[("routerzoo_decisions_total", (("model", "math-small"),))] == 1
        assert samples[("routerzoo_decisions_total", (("model", "history-small"),))] == 1
        assert samples[("routerzoo_routing_latency_seconds_count", ())] == 2
        assert samples[("routerzoo_upstream_latency_seconds_count", (("model", "math-small"),))] == 1
        assert samples[("routerzoo_tokens_total", (("kind", "completion"), ("model", "history-small")))] == 3
        info = [k for k in samples if k[0] == "routerzoo_router_info"]
        assert info and dict(info[0][1])["kind"] == "knn"
        for name in ("routerzoo_upstream_errors", "routerzoo_retries", "routerzoo_fallbacks",
                     "routerzoo_backends_in_cooldown", "routerzoo_estimated_cost_usd", "routerzoo_batch_size"):
            assert name in families, name


def test_ready_is_503_until_loaded_and_shutdown_drains(router, fakes, knn_dir, monkeypatch):
    import routerzoo.serving.app as serving_app

    b = fakes["B"][0]
    # hold the load until /ready has been asked: a warm machine may load the artifact before the
    # first request arrives, so the 503 must not depend on how long loading takes
    release = threading.Event()
    real_load = serving_app.load_for_serving

    def held_load(*args, **kwargs):
        assert release.wait(30), "the test never released the load"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(serving_app, "load_for_serving", held_load)
    cfg = load_config(None, {"router": str(knn_dir), "backends": backends_for(fakes)})
    app = create_app(cfg)  # loads the artifact itself, in the background
    server = ServerThread(app).start()
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "loading"}, ready.text
        release.set()
        wait_ready(server.url)
        b.script("slow:0.8")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=httpx.post(server.url + "/v1/chat/completions",
                                                                       json=chat_body(model="big"), timeout=10)))
        t.start()
        time.sleep(0.3)
    finally:
        server.stop()  # graceful: the request in flight finishes
    t.join()
    assert result["r"].status_code == 200 and result["r"].json()["model"] == "big"


# -- load ------------------------------------------------------------------------------------------------
TEMPLATES = ["Solve for x: {a}x + {b} = {c}.", "What is the derivative of x^{a} + {b}x?",
             "Who signed the treaty concluded in the year 1{a}{b}{c}?", "Describe the causes of the war that began in 1{a}{b}{c}."]


def prompts(n: int) -> list[str]:
    return [TEMPLATES[i % 4].format(a=i % 7 + 1, b=i % 5 + 1, c=i % 3 + 1) for i in range(n)]


async def fire(url: str, texts: list[str], concurrency: int, on_done=None, body_extra=None) -> list:
    """POST each text at ``concurrency``; returns (status, model, router label) per request."""
    results = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as h:
        async def one(text):
            async with sem:
                try:
                    r = await h.post("/v1/chat/completions", json=chat_body(text, **(body_extra or CHEAP)))
                    results.append((r.status_code, r.headers.get("x-routerzoo-model"), r.headers.get("x-routerzoo-router")))
                except httpx.HTTPError as exc:
                    results.append((type(exc).__name__, None, None))
                if on_done is not None:
                    on_done(len(results))
        await asyncio.gather(*(one(t) for t in texts))
    return results


def test_micro_batching_batches_concurrent_requests(router, fakes):
    with serving(router, fakes) as (url, state):
        results = asyncio.run(fire(url, prompts(64), 32))
        assert all(r[0] == 200 for r in results)
        n = metric(state, "routerzoo_batch_size_count")
        assert metric(state, "routerzoo_batch_size_sum") == 64  # every routed prompt went through a batch
        assert n < 40, f"{n} batches for 64 concurrent requests"


@contextmanager
def backend_process(name: str):
    """A fake backend in its own process, so it can be killed for real."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "routerzoo.serving.testing", "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield proc, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(10)


def test_failure_drill_one_of_two_backends_killed_under_load(router):
    """~300 requests at 24 concurrency; the box serving both small models is SIGKILLed after 100: none fails."""
    with backend_process("A") as (proc_a, url_a), backend_process("B") as (_, url_b):
        backends = {"math-small": {"base_url": url_a + "/v1"}, "history-small": {"base_url": url_a + "/v1"},
                    "big": {"base_url": url_b + "/v1"}}
        cfg = load_config(None, {"backends": backends, "cooldown": {"cooldown_s": 30}})
        app = create_app(cfg, router=router)
        with ServerThread(app) as server:
            wait_ready(server.url)

            def kill(done):
                if done == 100:
                    proc_a.kill()

            results = asyncio.run(fire(server.url, prompts(300), 24, on_done=kill))
            state = app.state.routerzoo
    assert proc_a.poll() is not None
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    models = [r[1] for r in results]
    assert {"math-small", "history-small"} <= set(models[:100])  # A served before it died
    assert set(models[-100:]) == {"big"}  # and B took over everything
    assert metric(state, "routerzoo_backends_in_cooldown") == 2


def test_hot_reload_alias_promotion_under_load(router, fakes, knn_dir, tmp_path):
    """Serving models:/served@champion; the alias moves to version 2 mid-load: no request fails, v2 takes over."""
    from routerzoo.serving.loader import load_for_serving
    from routerzoo.serving.reload import share_encoder
    from routerzoo.zoo import tracking
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def register() -> str:
        with tracking.run("serving-test", uri=uri):
            version = log_router_model(knn_dir, registered_name="served").registered_model_version
        set_alias("served", "champion", version)
        return str(version)

    assert register() == "1"
    cfg = load_config(None, {"router": "models:/served@champion", "tracking_uri": uri,
                             "backends": backends_for(fakes), "reload": {"poll_interval_s": 0.2}})
    loaded = load_for_serving(cfg.router, cfg)
    share_encoder(loaded.router, router)  # skip loading the encoder a second time in this process
    assert loaded.label == "served@1"
    app = create_app(cfg, router=loaded)
    promoted = threading.Event()

    def promote(done):
        if done == 60:
            threading.Thread(target=lambda: (register(), promoted.set()), daemon=True).start()

    with ServerThread(app) as server:
        wait_ready(server.url)
        results = asyncio.run(fire(server.url, prompts(150), 16, on_done=promote))
        assert promoted.wait(30)
        deadline = time.monotonic() + 20
        while httpx.get(server.url + "/ready").json()["router"]["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        after = asyncio.run(fire(server.url, prompts(48), 16))
        metrics_text = httpx.get(server.url + "/metrics").text
    everything = results + after
    assert all(r[0] == 200 for r in everything), [r for r in everything if r[0] != 200][:5]
    labels = [r[2] for r in everything]
    assert labels[0] == "served@1" and set(labels) <= {"served@1", "served@2"}
    assert {r[2] for r in after} == {"served@2"}
    assert 'version="2"' in metrics_text and 'routerzoo_router_reloads_total{outcome="swapped"} 1.0' in metrics_text


# -- the command line, in a real server process -----------------------------------------------------------
SERVER_SCRIPT = """
import json, os, signal, sys, threading, time
import httpx

def drive():
    url = "http://127.0.0.1:%(port)d"
    for _ in range(1200):
        try:
            if httpx.get(url + "/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={"model": "routerzoo", "messages": [
        {"role": "user", "content": "Solve for x: 3x + 2 = 8."}], "routerzoo": {"cost_weight": 1e4}})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pandas", "matplotlib", "pytorch_lightning")
                   or m.startswith("routerzoo.training"))
    print("RESULT", json.dumps({"status": r.status_code, "model": r.headers.get("x-routerzoo-model"), "heavy": heavy}), flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # graceful shutdown through uvicorn's handler

threading.Thread(target=drive, daemon=True).start()
from routerzoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_server_process_stays_light(knn_dir, fakes, tmp_path):
    """`routerzoo serve` in its own process answers a request without Lightning, training code, pandas or matplotlib."""
    import os
    import subprocess
    import sys

    from routerzoo.serving.testing import free_port

    port = free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(f"name: routerzoo\nbackends:\n  big:\n    base_url: {fakes['B'][1].url}/v1\n"
                      "logging:\n  level: warning\n")
    args = ["serve", str(knn_dir), "--config", str(config), "--port", str(port),
            "--backend", f"math-small={fakes['A'][1].url}/v1", "--backend", f"history-small={fakes['A'][1].url}/v1"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", SERVER_SCRIPT % {"port": port}, *args], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {"status": 200, "model": "math-small", "heavy": []}


def test_cli_start_up_errors(knn_dir, tmp_path, capsys):
    from routerzoo.cli import main

    assert main(["serve", str(knn_dir), "--backend", "big=http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "routerzoo: error:" in err and "['math-small', 'history-small']" in err and "restrict_to_backends" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends:\n  big:\n    base_url: http://127.0.0.1:9/v1\n    timeout_s: slow\n")
    assert main(["serve", str(knn_dir), "--config", str(bad)]) == 2
    assert "backends['big'].timeout_s" in capsys.readouterr().err
    bad.write_text("backends:\n  big:\n    base_url: http://127.0.0.1:9\n")
    assert main(["serve", str(knn_dir), "--config", str(bad)]) == 2
    assert "must end in /v1" in capsys.readouterr().err
    bad.write_text("limits:\n  max_inflight: 3\n")
    assert main(["serve", str(knn_dir), "--config", str(bad)]) == 2
    assert "unknown field(s) ['max_inflight']" in capsys.readouterr().err
    assert main(["serve", "--backend", "big"]) == 2
    assert "MODEL=BASE_URL" in capsys.readouterr().err


def test_serve_help_documents_every_option(capsys):
    from routerzoo.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for option in ("ROUTER", "--config", "--backend", "--name", "--host", "--port", "--prices", "--tracking-uri",
                   "--reload-interval", "--log-level", "--threads", "--deadline", "MODEL=BASE_URL[#ID]"):
        assert option in text, option


def test_example_config_loads():
    from conftest import REPO

    cfg = load_config(REPO / "configs" / "serve" / "example.yaml")
    assert cfg.backends and cfg.profiles and cfg.routing_input in ("last_user", "conversation")


def test_routing_text_last_user_or_conversation():
    from routerzoo.serving.app import parse_request

    body = {"model": "m", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": [{"type": "text", "text": "Solve"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "2x = 4"}]}]}
    assert parse_request(body, "chat", "last_user").text == "Solve\n2x = 4"
    assert parse_request(body, "chat", "conversation").text == "system: be brief\nuser: first\nassistant: \nuser: Solve\n2x = 4"
    assert parse_request({"model": "m", "prompt": ["a", "b"]}, "completions", "last_user").text == "a\nb"
    assert parse_request({"model": "m", "prompt": [[1, 2], [3]]}, "completions", "last_user").text == ""
