"""Hostile traffic over real HTTP on loopback: one bad request never fails another, and never a 500.

Each test asserts the status, OpenAI's error shape, that the server logged no traceback, and for the
batching cases that the good requests sharing the poisoned micro-batch all got 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
import test_serving as base
from test_serving import MATH, chat_body, metric, serving

from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.testing import ServerThread

# the serving suite's fixtures: its kNN router and fake backends
knn_dir, router, fakes, _reset_fakes = base.knn_dir, base.router, base.fakes, base._reset_fakes

ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture
def server_log(caplog):
    """Every record of the server (routerzoo and uvicorn loggers); asserts no traceback at the end."""
    caplog.set_level(logging.INFO)
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(caplog.handler)
    yield caplog
    uvicorn_error.removeHandler(caplog.handler)
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text[:500]
    error = r.json()["error"]
    assert set(error) == ERROR_KEYS, error
    return error


def raw_post(url: str, body: bytes, path: str = "/v1/chat/completions", timeout: float = 30) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=timeout)


async def _concurrently(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as h:
        return await asyncio.gather(*(h.post("/v1/chat/completions", content=b,
                                             headers={"content-type": "application/json"}) for b in bodies))


def _body(text: str) -> bytes:
    # json.dumps escapes a lone surrogate as \\ud800, as a hostile client would send it
    return json.dumps(chat_body(text)).encode()


class PoisonRouter:
    """The real router, except that ``predict`` raises on a prompt holding ``POISON``, as the encoder
    did on a lone surrogate: the batcher must fail that request alone."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def predict(self, prompts):
        if any("POISON" in p for p in prompts):
            raise UnicodeEncodeError("utf-8", "POISON", 0, 1, "surrogates not allowed")
        return self._inner.predict(prompts)


# -- bug 1: one bad prompt fails only itself ------------------------------------------------------------
@pytest.mark.parametrize("poison", ["lone surrogate", "encoder failure"])
def test_one_poison_prompt_among_15_good_in_one_micro_batch(router, fakes, server_log, poison):
    served = PoisonRouter(router) if poison == "encoder failure" else router
    bad = "poison \ud800 here" if poison == "lone surrogate" else "POISON here"
    # a long batch window: the 16 concurrent requests share a micro-batch
    with serving(served, fakes, batch={"max_wait_ms": 300, "max_batch": 64}) as (url, state):
        bodies = [_body(f"{MATH} variant {i}") for i in range(15)]
        bodies.insert(7, _body(bad))
        results = asyncio.run(_concurrently(url, bodies))
        statuses = [r.status_code for r in results]
        assert statuses.count(200) == 15 and statuses[7] == 400, statuses
        error = openai_error(results[7], 400)
        assert error["type"] == "invalid_request_error"
        if poison == "lone surrogate":
            assert error["param"] == "messages[0].content" and error["code"] == "invalid_json"
        else:
            assert error["code"] == "unroutable_text" and error["param"] == "messages"
            # the 15 good prompts did share a batch with the poison one before it was split off
            assert metric(state, "routerzoo_batch_size_count") < 15
        assert httpx.get(url + "/health").status_code == 200


# -- bug 2: never a 500 -------------------------------------------------------------------------------
def _nested(depth: int) -> bytes:
    return b'{"model":"routerzoo","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * depth + b"]" * depth + b"}"


HOSTILE = [
    # (body, path, expected param)
    (json.dumps({"model": "big\ud800", "messages": [{"role": "user", "content": "hi"}]}).encode(),
     "/v1/chat/completions", "model"),
    (json.dumps({"model": "big", "messages": [{"role": "user", "content": "hi"}], "user": "\udfff"}).encode(),
     "/v1/chat/completions", "user"),
    (json.dumps({"model": "routerzoo", "messages": [{"role": "user", "content": "hi"}], "metadata": {"k\ud800": 1}}).encode(),
     "/v1/chat/completions", "metadata"),
    (json.dumps({"model": "routerzoo", "prompt": ["ok", "bad \ud800"]}).encode(), "/v1/completions", "prompt[1]"),
    (_nested(5000), "/v1/chat/completions", None),
    (_nested(200), "/v1/completions", None),
    (b'{"model":"big","messages":[{"role":"user","content":"hi"}],"temperature":1e999}', "/v1/chat/completions", None),
    (b'{"model":"big","messages":[{"role":"user","content":"hi"}],"temperature":-Infinity}', "/v1/chat/completions", None),
    (b'{"model":"big","messages":[{"role":"user","content":"hi"}],"top_p":NaN}', "/v1/chat/completions", None),
    (b'{"request_id":"x\\ud800","reward":1}', "/v1/feedback", None),
    (b'{"request_id":' + b"[" * 5000 + b"]" * 5000 + b',"reward":1}', "/v1/feedback", None),
    (b'{"request_id":"x","reward":1e400}', "/v1/feedback", None),
]


def test_hostile_bodies_are_400_in_openai_shape_never_500(router, fakes, server_log, tmp_path):
    feedback = {"state_dir": str(tmp_path / "fb")}
    with serving(router, fakes, feedback=feedback) as (url, state):
        for body, path, param in HOSTILE:
            r = raw_post(url, body, path)
            error = openai_error(r, 400)
            assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json", (body[:80], error)
            if param is not None:
                assert error["param"] == param, (body[:80], error)
        assert not fakes["B"][0].received  # nothing hostile went upstream
        assert httpx.post(url + "/v1/chat/completions", json=chat_body(), timeout=30).status_code == 200
        assert metric(state, "routerzoo_requests_total", endpoint="/v1/chat/completions", status="500") == 0


# -- bug 7: a huge prompt does not block routing ---------------------------------------------------------
class _TokenizerSpy:
    """Wraps the encoder's tokenizer and records the longest text it was given."""

    def __init__(self, inner):
        self.inner, self.longest = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, texts, *args, **kw):
        self.longest = max([self.longest, *(len(t) for t in texts)])
        return self.inner(texts, *args, **kw)


def test_a_4mb_prompt_is_cut_before_tokenizing_and_routes_beside_good_ones(router, fakes, server_log):
    from routerzoo.routers.encoders.encoder import CHARS_PER_TOKEN

    backend = router.loaded_encoder._load_model()
    spy = _TokenizerSpy(backend.tokenizer)
    backend.tokenizer = spy
    try:
        with serving(router, fakes, batch={"max_wait_ms": 100}) as (url, _):
            huge = "Solve for x in this long equation " * 110_000  # 3.7 MB
            bodies = [_body(f"{MATH} {i}") for i in range(7)] + [_body(huge)]
            results = asyncio.run(_concurrently(url, bodies))
            assert [r.status_code for r in results] == [200] * 8
        assert 0 < spy.longest <= backend.max_length * CHARS_PER_TOKEN
    finally:
        backend.tokenizer = spy.inner


def test_truncating_characters_keeps_the_embedding(router):
    enc = router.loaded_encoder
    text = "The treaty of Westphalia ended the Thirty Years War. " * 400  # far beyond 256 tokens
    cut = enc._load_model().max_length * 32
    full, prefix = enc.encode([text + "tail"]), enc.encode([text[:cut]])
    assert float(full[0] @ prefix[0]) > 0.9999


# -- bug 8: feedback memory is bounded by bytes --------------------------------------------------------------
def test_feedback_map_is_bounded_by_bytes_and_keeps_only_what_the_encoder_reads(tmp_path):
    from routerzoo.serving.feedback import FeedbackLearner
    from routerzoo.serving.feedback_config import FeedbackConfig

    learner = FeedbackLearner(FeedbackConfig(state_dir=str(tmp_path), max_tracked_bytes=100_000), state=None)
    learner.router = object()  # recording needs a learning router only to exist
    for i in range(10):
        learner.record(f"r{i}", "x" * 1_000_000, "big")
    assert learner.tracked_bytes <= 100_000 and "r9" in learner._routed and "r0" not in learner._routed
    assert len(learner._routed["r9"][0]) <= 512 * 32


# -- bug 9: exposure ---------------------------------------------------------------------------------------
def test_no_paths_exposed_metrics_protectable_404_clipped(router, fakes, server_log, knn_dir, monkeypatch):
    monkeypatch.setenv("RZ_TEST_KEYS", "sekrit")
    auth = {"api_keys_env": "RZ_TEST_KEYS", "protect_metrics": True}
    cfg = load_config(None, {"router": str(knn_dir), "backends": base.backends_for(fakes), "auth": auth})
    app = create_app(cfg, router=router)
    with ServerThread(app) as server:
        url, state = server.url, app.state.routerzoo
        base.wait_ready(url)
        key = {"authorization": "Bearer sekrit"}
        ready = httpx.get(url + "/ready").text
        assert str(knn_dir) not in ready and "source" not in ready
        assert httpx.get(url + "/metrics").status_code == 401
        metrics = httpx.get(url + "/metrics", headers=key)
        assert metrics.status_code == 200 and str(knn_dir) not in metrics.text
        huge = "m" * 1_000_000
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(model=huge), headers=key, timeout=30)
        error = openai_error(r, 404)
        assert len(r.content) < 2000 and "1000000 characters" in error["message"]
        r = httpx.post(url + "/v1/feedback", json={"request_id": "x", "reward": 1}, headers=key)
        assert r.status_code == 404  # feedback is off
        for _ in range(100):  # counted just after the response went out
            if metric(state, "routerzoo_requests_total", endpoint="/v1/feedback", status="404") == 1:
                break
            time.sleep(0.01)
        assert metric(state, "routerzoo_requests_total", endpoint="/v1/feedback", status="404") == 1
        health = httpx.get(url + "/health/backends")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert set(health.json()["backends"]) == {"math-small", "history-small", "big"}
        assert "127.0.0.1" not in health.text


def test_backend_health_view_is_503_when_every_backend_is_down(router, fakes, server_log):
    fakes["A"][0].mode = fakes["B"][0].mode = "401"
    with serving(router, fakes) as (url, _):
        assert httpx.post(url + "/v1/chat/completions", json=chat_body(), timeout=30).status_code == 502
        health = httpx.get(url + "/health/backends")
        assert health.status_code == 503 and health.json()["status"] == "down"
        assert httpx.get(url + "/ready").status_code == 200  # the router is loaded: readiness is separate


def test_cli_host_backend_id_threads_and_deadline(knn_dir, tmp_path, capsys):
    from routerzoo.cli import build_parser, main
    from routerzoo.serving.cli import build_config

    assert main(["serve", str(knn_dir), "--host", "999.1.1.1", "--backend", "big=http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "--host '999.1.1.1'" in err and "Traceback" not in err
    args = build_parser().parse_args(["serve", str(knn_dir), "--backend", "big=http://h:8000/v1#Qwen/Qwen2.5-7B",
                                      "--threads", "2", "--deadline", "30"])
    cfg = build_config(args)
    assert cfg.backends["big"].model == "Qwen/Qwen2.5-7B" and cfg.backends["big"].base_url == "http://h:8000/v1"
    assert cfg.threads == 2 and cfg.limits.deadline_s == 30
    assert main(["serve", str(knn_dir), "--deadline", "-1"]) == 2
    assert "deadline_s" in capsys.readouterr().err


def test_serving_a_deferral_scorer_says_what_it_is(tmp_path, capsys):
    from routerzoo.cli import main

    folder = tmp_path / "scorer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"schema_version": 1, "role": "deferral", "kind": "entropy"}))
    assert main(["serve", str(folder), "--backend", "big=http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "is not a router (it is a deferral scorer, kind 'entropy')" in err and "mode: cascade" in err
