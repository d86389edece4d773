"""Hostile traffic over real HTTP on loopback: one bad request never fails another, and never a 500.

Each test asserts the status, OpenAI's error shape, that the server logged no traceback, and for the
batching cases that the good requests sharing the poisoned micro-batch all got 200.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
import test_serving as base
from test_serving import MATH, chat_body, metric, serving

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
