"""The server's side of the request log: one record per request, ``POST /v1/feedback`` for every
router, and per-version Prometheus series.

:class:`TrafficRecorder` is what :class:`~routerzoo.serving.app.ServerState` holds when the serve
config has a ``log:`` section. The app's hooks are small:

* the admission middleware calls :meth:`TrafficRecorder.begin` / :meth:`TrafficRecorder.end`
  around each completion request (so the record covers errors and whole streams, with the final
  status and latency);
* the request path adds fields with :func:`routerzoo.serving.request_log.note` (routing decision,
  the model that answered, fallbacks, tokens and cost);
* ``POST /v1/feedback`` goes to :meth:`TrafficRecorder.feedback`: the feedback is committed to the
  log's database before the 200; a reward also goes to an online-learning router's
  :class:`~routerzoo.serving.feedback.FeedbackLearner` when one is configured (a bandit still
  learns online; the log stays the record of what was acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

from routerzoo.serving.app import RequestError, decode_body
from routerzoo.serving.request_log import (
    FeedbackRefused,
    RequestLog,
    RequestLogConfig,
    close_record,
    open_record,
    parse_feedback,
)

log = logging.getLogger("routerzoo.serving.traffic")

LOGGED_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class VersionMetrics:
    """Per router version: requests, cost, latency, fallbacks, and the rewards given (mean = sum / count).

    The ``version`` label is the served router's ``name@version`` (bounded: one per deployed version).
    """

    def __init__(self, registry):
        r = registry
        self.requests = Counter("routerzoo_version_requests", "Routed requests, by router version and status class",
                                ["version", "status"], registry=r)
        self.cost = Counter("routerzoo_version_cost_usd", "Estimated USD cost of routed requests, by router version",
                            ["version"], registry=r)
        self.latency = Histogram("routerzoo_version_latency_seconds", "Request latency of routed requests, by router "
                                 "version", ["version"], buckets=_BUCKETS, registry=r)
        self.fallbacks = Counter("routerzoo_version_fallbacks", "Routed requests answered by a fallback, by router "
                                 "version", ["version"], registry=r)
        self.reward_sum = Counter("routerzoo_version_reward_sum", "Sum of rewards given to routed requests, by "
                                  "router version", ["version"], registry=r)
        self.reward_count = Counter("routerzoo_version_reward_count", "Rewards given to routed requests, by router "
                                    "version", ["version"], registry=r)
        self.dropped = Counter("routerzoo_request_log_dropped", "Request records dropped because the log's queue "
                               "was full", registry=r)


class TrafficRecorder:
    """The request log of one app, with its feedback endpoint and per-version metrics.

    Args:
        config: the ``log:`` section.
        state: the app's :class:`~routerzoo.serving.app.ServerState`.
    """

    def __init__(self, config: RequestLogConfig, state):
        self.config = config
        self.state = state
        self.log = RequestLog(config)
        self.metrics = VersionMetrics(state.metrics.registry)
        self._dropped_seen = 0

    async def start(self) -> None:
        await asyncio.to_thread(self.log.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.log.stop)

    # -- per request (called by the admission middleware) ----------------------------------------
    def begin(self, scope):
        """Open the record of a completion request; a token for :meth:`end`, or None for other paths."""
        endpoint = LOGGED_PATHS.get(scope.get("path", ""))
        if endpoint is None or scope.get("method") != "POST":
            return None
        return open_record(endpoint=endpoint, time=time.time(), t0=time.perf_counter())

    def end(self, token, rid: str, status: int) -> None:
        """Close the record with the final status and latency and queue it (never blocks)."""
        rec = close_record(token)
        if rec is None:
            return
        seconds = time.perf_counter() - rec.pop("t0")
        rec.update(request_id=rid, status=status, latency_ms=seconds * 1000.0)
        self.log.log(rec)
        version = rec.get("router")
        if version is not None:  # a routed request
            m = self.metrics
            m.requests.labels(version, f"{status // 100}xx").inc()
            m.latency.labels(version).observe(seconds)
            if rec.get("cost") is not None:
                m.cost.labels(version).inc(rec["cost"])
            if rec.get("fallbacks"):
                m.fallbacks.labels(version).inc()
        dropped = self.log.dropped
        if dropped > self._dropped_seen:
            self.metrics.dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    # -- POST /v1/feedback -------------------------------------------------------------------------
    async def feedback(self, request: Request) -> JSONResponse:
        """Store a reward or a preference (committed before the reply); pass a reward on to a bandit."""
        body = await self.state.read_body(request)
        try:
            entry = parse_feedback(decode_body(body))
            row = await self._store(entry)
        except FeedbackRefused as exc:
            raise RequestError(exc.status, exc.message, param=exc.param, code=exc.code) from None
        if row.get("version") is not None and row["reward"] is not None:
            self.metrics.reward_sum.labels(row["version"]).inc(row["reward"])
            self.metrics.reward_count.labels(row["version"]).inc()
        out = {"status": "accepted", "id": row["id"], "request_id": row["request_id"], "kind": row["kind"],
               "model": row.get("model")}
        if self.state.feedback is not None and entry.get("reward") is not None:
            out["learnt"] = await self._teach(request, body)
        return JSONResponse(out)

    async def _store(self, entry: dict) -> dict:
        try:
            return await asyncio.wrap_future(self.log.add_feedback(entry))
        except FeedbackRefused as exc:
            if exc.status != 404:
                raise
        # the request's own record is queued when its response has been sent, so a client that is
        # quick enough can name it before the writer has seen it: wait for one write, then ask again
        await asyncio.sleep(self.config.flush_interval_s * 2)
        return await asyncio.wrap_future(self.log.add_feedback(entry))

    async def _teach(self, request: Request, body: bytes) -> bool:
        """Hand the same body to the online learner; False (logged) when it refuses it."""
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.state.feedback.handle(Request(request.scope, replay))
            return True
        except RequestError as exc:
            log.info("feedback: stored, but the online learner did not take it: %s", exc.message)
            return False

