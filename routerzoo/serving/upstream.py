"""Calls to the OpenAI-compatible backends: one pooled client, retries, cooldown and probes.

One ``httpx.AsyncClient`` serves every backend (connection pooling, keep-alive). An *attempt* sends
the request once; a failed attempt (connection error, timeout, 429, 5xx, or an answer that is not
what an OpenAI-compatible server sends) is retried on the same backend with exponential backoff
(``Retry-After`` honoured up to a cap) until :class:`~routerzoo.serving.config.RetryConfig` says
stop; the caller then falls back to the next model. All of this happens before the first byte goes
to the client: a stream is handed over only once its first event has arrived intact.

Time is bounded: an attempt (waiting for a backend slot included) ends after the backend's
``timeout_s`` (a complete answer, or a stream's first event) even if bytes trickle in, and never
outlives the request's deadline; answers and stream events are read up to a byte cap.

A backend whose attempts fail ``cooldown.failures`` times in a row goes into cooldown: routed
requests skip it. When the cooldown ends it is probed in the background with a one-token completion
on the path that failed (a backend whose completions hang still answers ``GET /models``) and gets
traffic again only once the probe is answered with a completion.

Errors by class: a 401 / 403 means the backend refuses our key: no retry, cooldown at once, the
caller falls back. A 400 saying the prompt exceeds the model's context is flagged
(:attr:`Answer.context_exceeded`) so the caller can fall back to a model with a longer context.
Other 4xx answers are the request's fault, not the backend's: they are passed back to the client
unchanged and count as a healthy exchange.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from routerzoo.serving import jsonio
from routerzoo.serving.config import BackendConfig, CooldownConfig, RetryConfig

log = logging.getLogger("routerzoo.serving")

HEALTHY, COOLDOWN, PROBING = "healthy", "cooldown", "probing"

#: largest answer or single stream event read from a backend, bytes (a bigger one is a failed attempt)
MAX_ANSWER_BYTES = 32 * 1024 * 1024

# how OpenAI, vLLM, llama.cpp, TGI and Ollama word "the prompt is longer than the context"
_CONTEXT_EXCEEDED = re.compile(rb"context[_ ]length|context window|maximum context|exceeds? the context|"
                               rb"too many tokens|prompt is too long|longer than the model", re.IGNORECASE)


class AttemptError(Exception):
    """One failed attempt.

    Args:
        reason: short label for metrics and messages (``connect``, ``timeout``, ``status_503``, ...).
        retry_after: seconds the backend asked to wait (429 / 503 ``Retry-After``), if any.
    """

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None, status: int | None = None,
                 *, counts: bool = True, fatal: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
        self.counts = counts  # counts against the backend's health (waiting for a free slot does not)
        self.fatal = fatal  # retrying cannot help (401 / 403): cooldown now, fall back


class BackendFailed(Exception):
    """Every attempt on one backend failed (or it is in cooldown); the caller may fall back.

    Attributes:
        model: the candidate whose backend failed.
        last: the last attempt's error.
        all_rate_limited: every attempt was answered 429.
    """

    def __init__(self, model: str, last: AttemptError, all_rate_limited: bool):
        super().__init__(f"{model}: {last}")
        self.model = model
        self.last = last
        self.all_rate_limited = all_rate_limited


@dataclass
class Answer:
    """A complete (non-streaming) answer.

    Attributes:
        status: HTTP status (2xx, or a 4xx passed through).
        body: the decoded JSON body (an object; for a passed-through 4xx whatever JSON it held, or
            an OpenAI-shaped error built from its text).
        seconds: the successful attempt's duration.
        context_exceeded: a 400 saying the prompt is longer than the model's context window.
    """

    status: int
    body: dict
    seconds: float
    context_exceeded: bool = False


@dataclass
class StreamAnswer:
    """An open server-sent-event stream whose first event has arrived.

    Iterate :meth:`events` for the remaining complete events (bytes, without the blank-line
    separator); :meth:`aclose` releases the connection and the backend's concurrency slot.
    """

    first: bytes
    response: httpx.Response
    rest: AsyncIterator[bytes]
    seconds: float
    _release: object = None
    _closed: bool = field(default=False, repr=False)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            try:
                await self.rest.aclose()
            except RuntimeError:  # still running in another task; closing the response ends it
                pass
            await self.response.aclose()
        finally:
            if self._release is not None:
                self._release()


@dataclass
class BackendState:
    """Health of one backend."""

    name: str
    config: BackendConfig
    semaphore: asyncio.Semaphore
    state: str = HEALTHY
    failures: int = 0
    cooldown_until: float = 0.0
    probe_task: asyncio.Task | None = None
    last_path: str = "/chat/completions"  # the path of the last failed attempt: what the probe checks


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _sse_events(chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_ANSWER_BYTES) -> AsyncIterator[bytes]:
    """Complete SSE events (separator stripped, lines joined by LF) from a byte stream, in order.

    Lines end in CRLF, LF or CR (the SSE spec; sse-starlette sends CRLF). A CR that ends a chunk is
    held back until the next one, so a CRLF split across two TCP reads is one line ending, not two
    (which would end the event early and merge or break the next one).

    Raises:
        ValueError: an event (or a run of bytes with no separator) larger than ``max_event_bytes``.
    """
    buf = b""
    held_cr = False
    async for chunk in chunks:
        if not chunk:
            continue
        if held_cr:
            chunk = b"\r" + chunk
            held_cr = False
        if chunk.endswith(b"\r"):
            chunk, held_cr = chunk[:-1], True
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf += chunk
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            event, buf = buf[:end], buf[end + 2:]
            if len(event) > max_event_bytes:
                raise ValueError(f"a stream event larger than {max_event_bytes} bytes")
            if event.strip():
                yield event
        if len(buf) > max_event_bytes:
            raise ValueError(f"a stream event larger than {max_event_bytes} bytes")
    if buf.strip():
        yield buf


def is_openai_answer(body) -> bool:
    """Whether a 2xx body is what an OpenAI-compatible server answers (an object with ``choices``)."""
    return isinstance(body, dict) and isinstance(body.get("choices"), list)


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of an SSE event (lines joined), or None if it has none."""
    parts = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


class Upstream:
    """The backends and the one HTTP client that calls them.

    Args:
        backends: candidate model → its backend config.
        retry: retry and backoff policy.
        cooldown: cooldown and probe policy.
        client: an ``httpx.AsyncClient`` to share (tests, embedding apps); None creates one owned
            (and closed) by this object.
        metrics: a :class:`~routerzoo.serving.metrics.ServerMetrics` or None.
        max_answer_bytes: largest answer body / single stream event read from a backend.
    """

    def __init__(self, backends: dict[str, BackendConfig], retry: RetryConfig, cooldown: CooldownConfig,
                 client: httpx.AsyncClient | None = None, metrics=None, max_answer_bytes: int = MAX_ANSWER_BYTES):
        self.max_answer_bytes = int(max_answer_bytes)
        self.retry = retry
        self.cooldown = cooldown
        self.metrics = metrics
        self.backends = {name: BackendState(name, cfg, asyncio.Semaphore(cfg.max_concurrency))
                         for name, cfg in backends.items()}
        self._owns_client = client is None
        if client is None:
            total = sum(b.max_concurrency for b in backends.values()) or 100
            # timeouts are set per request (per backend); the pool is shared by all backends
            client = httpx.AsyncClient(limits=httpx.Limits(max_connections=total, max_keepalive_connections=total),
                                       timeout=httpx.Timeout(60.0), follow_redirects=False, trust_env=False)
        self.client = client

    async def aclose(self) -> None:
        for b in self.backends.values():
            if b.probe_task is not None:
                b.probe_task.cancel()
        if self._owns_client:
            await self.client.aclose()

    # -- health ----------------------------------------------------------------------------------
    def available(self, name: str) -> bool:
        """Whether ``name``'s backend takes traffic now; an expired cooldown starts a probe."""
        b = self.backends[name]
        if b.state == HEALTHY:
            return True
        if b.state == COOLDOWN and time.monotonic() >= b.cooldown_until and b.probe_task is None:
            b.state = PROBING
            b.probe_task = asyncio.get_running_loop().create_task(self._probe(b), name=f"probe-{name}")
        return False

    def health(self) -> dict[str, dict]:
        """Each backend's state (``healthy``, ``cooldown``, ``probing``) and failures in a row, for
        ``GET /health/backends`` (no URLs: the view is unauthenticated)."""
        return {n: {"state": b.state, "failures": b.failures} for n, b in self.backends.items()}

    def in_cooldown(self) -> list[str]:
        """Backends out of rotation."""
        return [n for n, b in self.backends.items() if b.state != HEALTHY]

    def _update_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.cooldown.set(len(self.in_cooldown()))

    def _failed(self, b: BackendState, err: AttemptError, path: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_errors.labels(b.name, err.reason).inc()
        if not err.counts:
            return
        b.failures += 1
        b.last_path = path
        if b.state == HEALTHY and (b.failures >= self.cooldown.failures or err.fatal):
            b.state = COOLDOWN
            b.cooldown_until = time.monotonic() + self.cooldown.cooldown_s
            log.warning("backend %s: %d failure(s) in a row (last: %s); cooling down for %.1f s",
                        b.name, b.failures, err.reason, self.cooldown.cooldown_s)
            self._update_gauge()

    def _succeeded(self, b: BackendState) -> None:
        b.failures = 0

    async def _probe(self, b: BackendState) -> None:
        """A one-token completion on the path that failed: only a backend that completes is healthy."""
        cfg = b.config
        if b.last_path == "/completions":
            body = {"model": cfg.model or b.name, "prompt": "ping", "max_tokens": 1}
        else:
            body = {"model": cfg.model or b.name, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        ok = False
        try:
            async with asyncio.timeout(self.cooldown.probe_timeout_s):
                r = await self.client.post(f"{cfg.base_url}{b.last_path}", content=jsonio.dumps(body),
                                           headers=self._headers(cfg), timeout=self.cooldown.probe_timeout_s)
            ok = 200 <= r.status_code < 300 and is_openai_answer(jsonio.loads_answer(r.content))
        except (httpx.HTTPError, TimeoutError, ValueError, UnicodeDecodeError):
            ok = False
        except asyncio.CancelledError:
            raise
        finally:
            b.probe_task = None
        if ok:
            b.state, b.failures = HEALTHY, 0
            log.info("backend %s: probe completion succeeded, back in rotation", b.name)
        else:
            b.state = COOLDOWN
            b.cooldown_until = time.monotonic() + self.cooldown.cooldown_s
        self._update_gauge()

    # -- calls -----------------------------------------------------------------------------------
    @staticmethod
    def _headers(cfg: BackendConfig, request_id: str | None = None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        key = cfg.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        if request_id:
            headers["x-request-id"] = request_id
        return headers

    def _timeout(self, cfg: BackendConfig) -> httpx.Timeout:
        return httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)

    def _backoff(self, retry_index: int, err: AttemptError) -> float:
        delay = min(self.retry.backoff_max_s, self.retry.backoff_s * (2 ** retry_index)) * random.uniform(0.75, 1.25)
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        return delay

    async def call(self, name: str, path: str, payload: bytes, *, stream: bool,
                   request_id: str | None = None, deadline: float | None = None) -> Answer | StreamAnswer:
        """Send ``payload`` to ``name``'s backend at ``path`` (e.g. ``/chat/completions``), with retries.

        Args:
            deadline: ``time.monotonic()`` by which the answer (a stream's first event) must have
                come; no attempt, backoff or wait for a slot goes past it. None: only the
                backend's ``timeout_s`` per attempt bounds it.

        Returns:
            an :class:`Answer` (2xx, or a client-error 4xx to pass through), or for ``stream`` a
            :class:`StreamAnswer` once the first event arrived.

        Raises:
            BackendFailed: every attempt failed, the backend went into cooldown meanwhile, or the
                deadline passed (``last.reason == "deadline"``).
        """
        b = self.backends[name]
        url = f"{b.config.base_url}{path}"
        headers = self._headers(b.config, request_id)
        timeout = self._timeout(b.config)
        rate_limited = True
        attempt = 0
        while True:
            budget = b.config.timeout_s
            if deadline is not None:
                budget = min(budget, deadline - time.monotonic())
                if budget <= 0:
                    raise BackendFailed(name, AttemptError("deadline", "the request's deadline passed"), False)
            phase = ["slot"]
            try:
                try:
                    async with asyncio.timeout(budget):
                        if stream:
                            return await self._stream_attempt(b, url, headers, payload, timeout, phase)
                        return await self._attempt(b, url, headers, payload, timeout, phase)
                except TimeoutError:
                    past = deadline is not None and time.monotonic() >= deadline
                    reason = "deadline" if past else "busy" if phase[0] == "slot" else "timeout"
                    # neither our deadline nor a full backend is the backend failing
                    raise AttemptError(reason, f"no answer within {budget:.1f} s", counts=reason == "timeout") from None
            except AttemptError as err:
                self._failed(b, err, path)
                rate_limited = rate_limited and err.status == 429
                if err.reason in ("deadline", "busy") or err.fatal or attempt >= self.retry.max_retries or b.state != HEALTHY:
                    raise BackendFailed(name, err, rate_limited) from None
                if err.retry_after is not None and err.retry_after > self.retry.retry_after_max_s:
                    # waiting that long would stall the client: the next model answers sooner
                    raise BackendFailed(name, err, rate_limited) from None
                delay = self._backoff(attempt, err)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise BackendFailed(name, err, rate_limited) from None
                attempt += 1
                if self.metrics is not None:
                    self.metrics.retries.labels(name).inc()
                await asyncio.sleep(delay)

    @staticmethod
    def _status_error(response: httpx.Response, text: bytes) -> AttemptError:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        detail = text[:200].decode("utf-8", "replace")
        if status in (401, 403):  # our key is refused: every retry would be too
            return AttemptError(f"status_{status}", detail, status=status, fatal=True)
        return AttemptError(f"status_{status}", detail, retry_after, status)

    @staticmethod
    def _is_failure(status: int) -> bool:
        return status in (401, 403, 408, 429) or status >= 500

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks, total = [], 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > self.max_answer_bytes:
                raise AttemptError("too_large", f"an answer over {self.max_answer_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _passed_through(self, b: BackendState, status: int, content: bytes, seconds: float) -> Answer:
        """A 4xx that is the request's fault (or an odd 1xx / 3xx), for the client as it is."""
        self._succeeded(b)
        try:
            body = jsonio.loads_answer(content)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            body = {"error": {"message": content[:500].decode("utf-8", "replace"), "type": "invalid_request_error",
                              "param": None, "code": f"upstream_{status}"}}
        exceeded = status in (400, 413, 422) and bool(_CONTEXT_EXCEEDED.search(content[:4096]))
        return Answer(status if 400 <= status < 500 else 502, body, seconds, exceeded)

    async def _send(self, url: str, headers: dict, payload: bytes, timeout) -> httpx.Response:
        request = self.client.build_request("POST", url, content=payload, headers=headers, timeout=timeout)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise AttemptError("timeout", type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise AttemptError("connect" if isinstance(exc, httpx.ConnectError) else "transport",
                               type(exc).__name__) from None

    async def _attempt(self, b: BackendState, url: str, headers: dict, payload: bytes, timeout, phase: list) -> Answer:
        await self._wait_slot(b, phase)
        t0 = time.perf_counter()
        try:
            response = await self._send(url, headers, payload, timeout)
            try:
                content = await self._read_capped(response)
            except httpx.TimeoutException as exc:
                raise AttemptError("timeout", type(exc).__name__) from None
            except httpx.HTTPError as exc:
                raise AttemptError("transport", type(exc).__name__) from None
            finally:
                await response.aclose()
        finally:
            b.semaphore.release()
        status = response.status_code
        if self._is_failure(status):
            raise self._status_error(response, content)
        if 200 <= status < 300:
            try:
                body = jsonio.loads_answer(content)
            except (ValueError, UnicodeDecodeError):
                body = None
            if not is_openai_answer(body):
                raise AttemptError("bad_response", "the answer is not an OpenAI completion (no choices)", status=status)
            self._succeeded(b)
            return Answer(status, body, time.perf_counter() - t0)
        return self._passed_through(b, status, content, time.perf_counter() - t0)

    @staticmethod
    async def _wait_slot(b: BackendState, phase: list) -> None:
        """Wait for one of the backend's concurrency slots, bounded by the attempt's time limit (the
        caller's ``asyncio.timeout``); ``phase[0]`` says whether the wait was still going when it ran out."""
        phase[0] = "slot"
        await b.semaphore.acquire()
        phase[0] = "call"

    async def _stream_attempt(self, b: BackendState, url: str, headers: dict, payload: bytes, timeout,
                              phase: list) -> Answer | StreamAnswer:
        await self._wait_slot(b, phase)
        t0 = time.perf_counter()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                b.semaphore.release()

        response = None
        try:
            response = await self._send(url, headers, payload, timeout)
            status = response.status_code
            if status != 200:
                try:
                    content = await self._read_capped(response)
                except httpx.HTTPError:
                    content = b""
                await response.aclose()
                if self._is_failure(status):
                    raise self._status_error(response, content)
                release()
                return self._passed_through(b, status, content, time.perf_counter() - t0)
            events = _sse_events(response.aiter_bytes(), self.max_answer_bytes)
            data = None
            try:
                while data is None:  # comment-only events (keep-alives) before the first data event are dropped
                    first = await anext(events)
                    data = event_data(first)
            except StopAsyncIteration:
                raise AttemptError("bad_response", "empty stream") from None
            except ValueError:
                raise AttemptError("too_large", "a stream event over the size cap") from None
            except httpx.TimeoutException as exc:
                raise AttemptError("timeout", type(exc).__name__) from None
            except httpx.HTTPError as exc:
                raise AttemptError("transport", type(exc).__name__) from None
            if not _valid_first(data):
                raise AttemptError("bad_response", "the stream does not start with an OpenAI chunk (no choices)")
            self._succeeded(b)
            return StreamAnswer(first, response, events, time.perf_counter() - t0, release)
        except BaseException:
            if response is not None:
                await response.aclose()
            release()
            raise


def _valid_first(data: bytes) -> bool:
    try:
        return is_openai_answer(jsonio.loads_answer(data))
    except (ValueError, UnicodeDecodeError):
        return False
