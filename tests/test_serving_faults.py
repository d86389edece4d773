"""Faulty backends over real HTTP on loopback: every request ends within its deadline, falling back
where another model can answer, and a client that leaves cancels its upstream call.

Backends are :class:`~routerzoo.serving.testing.FakeBackend` with injected faults (A serves
math-small and history-small, B serves big); a math prompt routes to math-small first.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
import test_serving as base
import test_serving_hostile as hostile
from test_serving import backends_for, chat_body, metric, serving
from test_serving_hostile import openai_error

from routerzoo.serving.upstream import _sse_events

knn_dir, router, fakes, _reset_fakes = base.knn_dir, base.router, base.fakes, base._reset_fakes
server_log = hostile.server_log
CHEAP = base.CHEAP
FAST_RETRY = {"max_retries": 0, "backoff_s": 0.01}


def short_timeouts(fakes, timeout_s: float = 0.8, **extra) -> dict:
    return {m: {**cfg, "timeout_s": timeout_s, **extra} for m, cfg in backends_for(fakes).items()}


def post(url: str, body: dict, timeout: float = 30) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout)
    return r, time.monotonic() - t0


# -- a 200 that is not an OpenAI answer ------------------------------------------------------------------
def test_a_200_that_is_not_an_openai_answer_falls_back(router, fakes, server_log):
    a = fakes["A"][0]
    a.mode = "notopenai"
    with serving(router, fakes, retry=FAST_RETRY) as (url, state):
        r, _ = post(url, chat_body(**CHEAP))
        assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "big", r.text
        assert r.json()["choices"][0]["message"]["content"] == "answer from B"
        assert metric(state, "routerzoo_upstream_errors_total", model="math-small", reason="bad_response") == 1
        error = openai_error(httpx.post(url + "/v1/chat/completions", json=chat_body(model="math-small"), timeout=30), 502)
        assert error["code"] == "upstream_failed" and "hello" not in json.dumps(error)


# -- time: trickle, hang, deadline ------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["trickle:0.2", "hang"])
def test_trickling_or_hung_backend_falls_back_within_its_timeout(router, fakes, server_log, fault, stream):
    fakes["A"][0].mode = fault
    with serving(router, fakes, retry=FAST_RETRY, backends=short_timeouts(fakes, 0.8)) as (url, state):
        r, took = post(url, chat_body(stream=stream, **CHEAP))
        assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "big", r.text[:300]
        assert "answer from B" in r.text or "B" in r.text
        assert took < 0.8 * 2 + 1.5, took  # two A models timed out, then B answered
        assert metric(state, "routerzoo_upstream_errors_total", model="math-small", reason="timeout") == 1


def test_request_deadline_ends_a_hung_request_with_504(router, fakes, server_log):
    fakes["A"][0].mode = "hang"
    with serving(router, fakes, retry=FAST_RETRY, limits={"deadline_s": 1.0},
                 backends=short_timeouts(fakes, 30)) as (url, state):
        r, took = post(url, chat_body(model="math-small"))
        error = openai_error(r, 504)
        assert error["code"] == "deadline_exceeded" and error["type"] == "upstream_error"
        assert 0.9 < took < 2.5, took
        # the deadline is ours, not the backend failing: no cooldown
        assert state.upstream.in_cooldown() == []


def test_stream_deadline_ends_a_stalled_stream_with_an_error_event(router, fakes, server_log):
    a = fakes["A"][0]
    with serving(router, fakes, retry=FAST_RETRY, limits={"deadline_s": 1.5}) as (url, _):
        a.mode = "stall"  # the first event arrives in time, the rest never
        t0 = time.monotonic()
        with httpx.stream("POST", url + "/v1/chat/completions", json=chat_body(model="math-small", stream=True),
                          timeout=30) as r:
            assert r.status_code == 200
            text = r.read().decode()
        assert time.monotonic() - t0 < 3.0
        assert '"code":"deadline_exceeded"' in text


# -- a client that leaves ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_the_upstream_call(router, fakes, server_log, stream):
    a = fakes["A"][0]
    a.mode = "hang"
    before = a.disconnects
    with serving(router, fakes) as (url, state):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=chat_body(model="math-small", stream=stream), timeout=0.5)
        deadline = time.monotonic() + 5
        while (a.disconnects < before + 1 or state.in_flight) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.disconnects == before + 1 and state.in_flight == 0
        assert metric(state, "routerzoo_requests_total", endpoint="/v1/chat/completions", status="499") == 1


# -- a slow upload holds no slot ---------------------------------------------------------------------------------
def test_slow_uploads_hold_no_slot_and_time_out_with_408(router, fakes, server_log):
    with serving(router, fakes, limits={"max_in_flight": 2, "body_timeout_s": 1.0}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        slow = []
        for _ in range(4):  # twice the in-flight cap, each sending half its body
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 100\r\n\r\n{\"model\":")
            slow.append(s)
        try:
            for _ in range(3):
                r, _ = post(url, chat_body(**CHEAP))
                assert r.status_code == 200, r.text
            for s in slow:
                s.settimeout(5)
                head = s.recv(4096)
                assert head.startswith(b"HTTP/1.1 408"), head[:100]
                assert b'"code":"body_timeout"' in head or b"body_timeout" in s.recv(4096)
        finally:
            for s in slow:
                s.close()


# -- errors by class ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["401", "403"])
def test_backend_refusing_our_key_cools_down_and_falls_back(router, fakes, server_log, status):
    a = fakes["A"][0]
    a.mode = status
    with serving(router, fakes) as (url, state):
        r, _ = post(url, chat_body(**CHEAP))
        assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "big"
        assert len(a.received) == 2  # math-small and history-small once each: a refused key is not retried
        assert set(state.upstream.in_cooldown()) == {"math-small", "history-small"}


def test_context_length_400_falls_back_to_a_longer_context(router, fakes, server_log):
    a = fakes["A"][0]
    a.mode = "context"
    windows = {"math-small": 4096, "history-small": 4096, "big": 128000}
    backends = {m: {**cfg, "context_window": windows[m]} for m, cfg in backends_for(fakes).items()}
    with serving(router, fakes, backends=backends) as (url, state):
        r, _ = post(url, chat_body(**CHEAP))
        assert r.status_code == 200 and r.headers["x-routerzoo-model"] == "big"
        assert len(a.received) == 1  # history-small's window is no longer: not tried
        assert state.upstream.in_cooldown() == []  # the prompt's fault, not the backend's
    with serving(router, fakes) as (url, _):  # no windows declared: the backend's 400 as it is
        error = openai_error(post(url, chat_body(**CHEAP))[0], 400)
        assert error["code"] == "context_length_exceeded"


def test_probe_is_a_tiny_completion_so_hung_completions_stay_out(router, fakes, server_log):
    a = fakes["A"][0]
    a.mode = "hang"
    cooldown = {"failures": 1, "cooldown_s": 0.3, "probe_timeout_s": 0.3}
    with serving(router, fakes, retry=FAST_RETRY, cooldown=cooldown, backends=short_timeouts(fakes, 0.5)) as (url, state):
        r, _ = post(url, chat_body(**CHEAP))
        assert r.headers["x-routerzoo-model"] == "big"
        assert "math-small" in state.upstream.in_cooldown()
        for _ in range(3):  # cooldowns expire, probes hang (GET /models would have answered)
            time.sleep(0.7)
            post(url, chat_body(**CHEAP))
        assert "math-small" in state.upstream.in_cooldown()
        probes = [b for b in a.received if b.get("max_tokens") == 1]
        assert probes and probes[-1]["messages"][0]["content"] == "ping"
        a.mode = "ok"
        deadline = time.monotonic() + 5
        while state.upstream.in_cooldown() and time.monotonic() < deadline:
            post(url, chat_body(**CHEAP))
            time.sleep(0.2)
        assert state.upstream.in_cooldown() == []


# -- SSE framing ---------------------------------------------------------------------------------------------
async def _events(chunks: list[bytes]) -> list[bytes]:
    async def gen():
        for c in chunks:
            yield c

    return [e async for e in _sse_events(gen())]


def test_sse_framing_survives_a_split_at_every_byte():
    stream = (b": keep-alive\r\n\r\ndata: {\"a\": 1}\r\n\r\nevent: x\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\n"
              b"data: {\"c\": 3}\n\ndata: {\"d\": 4}\r\rdata: [DONE]\r\n\r\n")
    want = asyncio.run(_events([stream]))
    assert want == [b": keep-alive", b'data: {"a": 1}', b'event: x\ndata: {"b":\ndata: 2}', b'data: {"c": 3}',
                    b'data: {"d": 4}', b"data: [DONE]"]
    for i in range(1, len(stream)):
        assert asyncio.run(_events([stream[:i], stream[i:]])) == want, i
    assert asyncio.run(_events([stream[i:i + 1] for i in range(len(stream))])) == want


def test_sse_buffer_is_bounded():
    async def endless():
        for _ in range(100):
            yield b"data: " + b"x" * 1000

    async def run():
        return [e async for e in _sse_events(endless(), max_event_bytes=10_000)]

    with pytest.raises(ValueError):
        asyncio.run(run())


def test_crlf_stream_in_one_byte_writes_is_relayed_intact(router, fakes, server_log):
    fakes["A"][0].mode = "crlf"
    with serving(router, fakes) as (url, state):
        with httpx.stream("POST", url + "/v1/chat/completions", json=chat_body(stream=True, **CHEAP), timeout=30) as r:
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "answer from A"
        assert metric(state, "routerzoo_upstream_errors_total", model="math-small", reason="bad_response") == 0


@pytest.mark.parametrize("stream", [False, True])
def test_answers_over_the_byte_cap_are_failed_attempts(router, fakes, server_log, stream):
    with serving(router, fakes, retry=FAST_RETRY, limits={"max_answer_bytes": 64}) as (url, state):
        error = openai_error(post(url, chat_body(model="big", stream=stream))[0], 502)
        assert "too_large" in error["message"]
        assert metric(state, "routerzoo_upstream_errors_total", model="big", reason="too_large") == 1
