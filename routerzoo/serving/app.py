"""The OpenAI-compatible router server (FastAPI).

``create_app(settings, router=None, http_client=None)`` builds an app with no module-level state:
everything lives in a :class:`ServerState` made per app, started and stopped by the app's lifespan.

Request flow for ``POST /v1/chat/completions`` and ``POST /v1/completions``:

1. admission (:class:`AdmissionMiddleware`): API key (401), in-flight cap (429), request id, and a
   last-resort handler that turns any unexpected exception into an OpenAI-shaped 500 without a
   traceback;
2. the body is read up to ``limits.max_body_bytes`` (413), decoded and checked (400 naming the
   field);
3. ``model`` = the served name: the routing text (last user turn, or the conversation) goes through
   the micro-batcher to ``router.predict``, the request's policy (``routerzoo`` options, profile or
   the router's default) picks a model, and the remaining candidates are ordered by utility for
   fallback; ``model`` = a backend's name: that backend only; anything else: 404;
4. the body minus ``routerzoo``, with ``model`` set to the backend's own model id, goes upstream
   (:mod:`routerzoo.serving.upstream`: retries, cooldown), falling back along the order;
5. the answer comes back with ``model`` = the candidate that answered and ``x-routerzoo-*``
   headers (model, scores, estimated cost, request id); streams are relayed event by event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from routerzoo.errors import UserError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.serving import jsonio
from routerzoo.serving.batcher import MicroBatcher
from routerzoo.serving.config import ServeConfig
from routerzoo.serving.loader import LoadedRouter, load_for_serving, parse_alias_uri, prepare_router
from routerzoo.serving.metrics import ServerMetrics
from routerzoo.serving.reload import AliasWatcher, RouterHolder
from routerzoo.serving.request_log import note
from routerzoo.serving.upstream import Answer, BackendFailed, StreamAnswer, Upstream, event_data

log = logging.getLogger("routerzoo.serving")

# quality given to candidates without a backend: finite (policies refuse NaN / inf), far below any scale
_MASKED_QUALITY = -1e12
_ROUTING_KEYS = ("cost_weight", "threshold", "strong", "weak", "profile")
_ENDPOINTS = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/feedback", "/health", "/ready",
              "/metrics", "/health/backends"}
_OPEN_PATHS = ("/health", "/ready", "/metrics")
_REQUEST_ID_KEY = "routerzoo.request_id"
_ADMIT_KEY = "routerzoo.admit"


class RequestError(Exception):
    """A request the server refuses, in OpenAI's error shape.

    Args:
        status: HTTP status.
        message: what is wrong, for the client.
        type: OpenAI error type (``invalid_request_error``, ``authentication_error``, ...).
        param: the offending field, if any.
        code: a machine-readable code, if any.
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: RequestError, headers: dict | None = None) -> Response:
    return Response(_dumps(error_body(exc.message, exc.type, exc.param, exc.code)), status_code=exc.status,
                    media_type="application/json", headers={**(exc.headers or {}), **(headers or {})})


_dumps = jsonio.dumps


def decode_body(body: bytes):
    """The request body as JSON, strictly (:func:`routerzoo.serving.jsonio.loads`); 400 naming the field."""
    try:
        return jsonio.loads(body)
    except jsonio.BadJSON as exc:
        raise RequestError(400, str(exc), param=exc.param, code="invalid_json") from None


def _clip(text: str, limit: int = 120) -> str:
    """``text`` cut for an error message: a client must not get its megabyte back."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the event loop's clock (for ``asyncio.timeout_at``)."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


# -- request parsing ----------------------------------------------------------------------------
@dataclass
class ParsedRequest:
    """What the server reads from a request body (the rest goes upstream untouched).

    Attributes:
        payload: the decoded body.
        model: the requested model name.
        stream: whether the client asked for server-sent events.
        options: the ``routerzoo`` routing options (empty when absent).
        text: the routing text.
    """

    payload: dict
    model: str
    stream: bool
    options: dict
    text: str


def _content_text(content, param: str) -> str:
    """Text of a message ``content``: a string, a list of parts (text parts joined), or null."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise RequestError(400, f"{param}[{i}] must be an object (a content part)", param=f"{param}[{i}]")
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    raise RequestError(400, f"{param} must be a string, a list of content parts or null", param=param)


def parse_request(payload, endpoint: str, routing_input: str) -> ParsedRequest:
    """Check the fields the server reads and extract the routing text.

    Args:
        payload: the decoded JSON body.
        endpoint: ``chat`` or ``completions``.
        routing_input: ``last_user`` or ``conversation``.

    Raises:
        RequestError: 400 naming the field.
    """
    if not isinstance(payload, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(payload).__name__}")
    model = payload.get("model")
    if model is None:
        raise RequestError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "model must be a non-empty string", param="model")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError(400, "stream must be true or false", param="stream")
    options = payload.get("routerzoo")
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        raise RequestError(400, "routerzoo must be an object of routing options", param="routerzoo")
    if endpoint == "chat":
        messages = payload.get("messages")
        if messages is None:
            raise RequestError(400, "you must provide messages", param="messages", code="missing_required_parameter")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list of messages", param="messages")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise RequestError(400, f"messages[{i}] must be an object", param=f"messages[{i}]")
            if not isinstance(msg.get("role"), str):
                raise RequestError(400, f"messages[{i}].role must be a string", param=f"messages[{i}].role")
        if routing_input == "conversation":
            text = "\n".join(f"{m['role']}: {_content_text(m.get('content'), f'messages[{i}].content')}"
                             for i, m in enumerate(messages))
        else:
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            i = users[-1] if users else len(messages) - 1
            text = _content_text(messages[i].get("content"), f"messages[{i}].content")
    else:
        prompt = payload.get("prompt")
        if prompt is None:
            raise RequestError(400, "you must provide a prompt", param="prompt", code="missing_required_parameter")
        if isinstance(prompt, str):
            text = prompt
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            text = "\n".join(prompt)
        elif isinstance(prompt, list) and prompt and all(
                (isinstance(p, int) and not isinstance(p, bool))
                or (isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p))
                for p in prompt):
            text = ""  # token ids: nothing the router can read; it routes on the empty text
        else:
            raise RequestError(400, "prompt must be a string, a list of strings, or token ids", param="prompt")
    return ParsedRequest(payload, model, bool(stream), options, text)


def _number(options: dict, key: str, *, minimum: float | None = None) -> float | None:
    v = options.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise RequestError(400, f"routerzoo.{key} must be a finite number{bound}, got {v!r}", param=f"routerzoo.{key}")
    return float(v)


def resolve_policy(loaded: LoadedRouter, options: dict, settings: ServeConfig):
    """The policy a request asks for: its ``routerzoo`` options over its profile over the router's default.

    ``threshold`` without ``strong`` / ``weak`` uses the most and least expensive routable
    candidates by mean training cost (RouteLLM's strong / weak).

    Raises:
        RequestError: unknown keys, bad values, unknown profile or models (400).
    """
    if not options:
        return loaded.router.policy
    unknown = sorted(set(options) - set(_ROUTING_KEYS))
    if unknown:
        raise RequestError(400, f"unknown routing option(s) {unknown}; use {list(_ROUTING_KEYS)}",
                           param=f"routerzoo.{unknown[0]}")
    merged: dict = {}
    profile = options.get("profile")
    if profile is not None:
        if not isinstance(profile, str) or profile not in settings.profiles:
            raise RequestError(400, f"unknown profile {profile!r}; profiles: {sorted(settings.profiles)}",
                               param="routerzoo.profile", code="unknown_profile")
        p = settings.profiles[profile]
        merged = {k: getattr(p, k) for k in ("cost_weight", "threshold", "strong", "weak") if getattr(p, k) is not None}
    cost_weight = _number(options, "cost_weight", minimum=0.0)
    threshold = _number(options, "threshold")
    for key in ("strong", "weak"):
        if options.get(key) is not None and not isinstance(options[key], str):
            raise RequestError(400, f"routerzoo.{key} must be a model name", param=f"routerzoo.{key}")
    two_model = threshold is not None or options.get("strong") is not None or options.get("weak") is not None
    if cost_weight is not None and two_model:
        raise RequestError(400, "give routerzoo.cost_weight or threshold/strong/weak, not both", param="routerzoo")
    if cost_weight is not None:
        merged = {"cost_weight": cost_weight}
    elif two_model:
        merged.pop("cost_weight", None)
        if threshold is not None:
            merged["threshold"] = threshold
        for key in ("strong", "weak"):
            if options.get(key) is not None:
                merged[key] = options[key]
    if "threshold" in merged or "strong" in merged or "weak" in merged:
        for key in ("strong", "weak"):
            if merged.get(key) is not None and merged[key] not in loaded.routable:
                raise RequestError(400, f"routerzoo.{key}: {merged[key]!r} is not a routable model; "
                                        f"routable: {loaded.routable}", param=f"routerzoo.{key}")
        if merged.get("strong") is None or merged.get("weak") is None:
            merged.update(_strong_weak(loaded, merged))
    try:
        return loaded.router.make_policy(merged.get("cost_weight"), threshold=merged.get("threshold"),
                                         strong=merged.get("strong"), weak=merged.get("weak"))
    except UserError as exc:
        raise RequestError(400, str(exc), param="routerzoo") from None


def _strong_weak(loaded: LoadedRouter, merged: dict) -> dict:
    cost = loaded.router.cost_model.mean_cost
    idx = [j for j, ok in enumerate(loaded.mask) if ok and np.isfinite(cost[j])]
    if len(idx) < 2:
        raise RequestError(400, "routerzoo.threshold needs routerzoo.strong and routerzoo.weak (the router "
                                "knows no costs to pick them)", param="routerzoo.strong")
    models = loaded.router.models
    out = {}
    if merged.get("strong") is None:
        out["strong"] = models[max(idx, key=lambda j: cost[j])]
    if merged.get("weak") is None:
        out["weak"] = models[min(idx, key=lambda j: cost[j])]
    if (out.get("strong") or merged.get("strong")) == (out.get("weak") or merged.get("weak")):
        raise RequestError(400, "routerzoo.strong and routerzoo.weak would be the same model; name both",
                           param="routerzoo.strong")
    return out


def preference_order(loaded: LoadedRouter, policy, quality: np.ndarray, cost: np.ndarray) -> list[str]:
    """The policy's choice first, then the other routable candidates by descending utility."""
    router = loaded.router
    q = np.where(loaded.mask, quality, _MASKED_QUALITY)
    try:
        chosen = int(router.decide(Prediction(q[None, :], cost[None, :]), policy)[0])
    except Exception as exc:  # noqa: BLE001 - e.g. a batch-coupled default policy refusing one prompt
        log.warning("policy %s failed on one request (%s); using the best predicted quality", type(policy).__name__, exc)
        chosen = int(np.argmax(q))
    if not loaded.mask[chosen]:
        chosen = int(np.argmax(q))
    lam = getattr(getattr(policy, "config", None), "cost_weight", 0.0) or 0.0
    utility = q - lam * cost
    rest = sorted((j for j in range(len(router.models)) if loaded.mask[j] and j != chosen), key=lambda j: -utility[j])
    return [router.models[j] for j in [chosen, *rest]]


# -- the server's state ---------------------------------------------------------------------------
class ServerState:
    """Everything one app owns: config, metrics, batcher, upstream client, the router holder.

    Args:
        settings: the serve config.
        router: a :class:`~routerzoo.routers.Router` or an already prepared
            :class:`~routerzoo.serving.loader.LoadedRouter`; None loads ``settings.router`` at start-up.
        http_client: an ``httpx.AsyncClient`` for upstream calls; None creates one.
    """

    def __init__(self, settings: ServeConfig, router=None, http_client=None):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.key_hashes = settings.auth.key_hashes()
        self.holder = RouterHolder()
        self.holder.on_swap = self._on_swap
        self._initial = router
        self._http_client = http_client
        self.batcher: MicroBatcher | None = None
        self.upstream: Upstream | None = None
        self.watcher: AliasWatcher | None = None
        self.policy_watcher = None  # mode: cascade from models:/NAME@ALIAS (reload.PolicyWatcher)
        self.ready = False
        self.in_flight = 0
        self._startup: asyncio.Task | None = None
        # mode: cascade answers the served name with a cascade (routerzoo/serving/cascade.py)
        self.cascade = None
        if settings.mode == "cascade":
            from routerzoo.serving.cascade import CascadeServer

            self.cascade = CascadeServer(settings.cascade, self)
        # POST /v1/feedback: rewards teach an online-learning router (routerzoo/serving/feedback.py)
        self.feedback = None
        if settings.feedback is not None:
            from routerzoo.serving.feedback import FeedbackLearner

            self.feedback = FeedbackLearner(settings.feedback, self)
        # log: every completion request recorded, feedback for every router (routerzoo/serving/traffic.py)
        self.traffic = None
        if settings.log is not None:
            from routerzoo.serving.traffic import TrafficRecorder

            self.traffic = TrafficRecorder(settings.log, self)
        # shadow / canary: a challenger beside the champion (routerzoo/serving/rollout.py)
        self.rollout = None
        if settings.shadow or settings.canary is not None:
            from routerzoo.serving.rollout import Rollout

            self.rollout = Rollout(self)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.batcher = MicroBatcher(s.batch.max_wait_ms / 1000.0, s.batch.max_batch, on_batch=self._on_batch)
        self.batcher.start()
        self.upstream = Upstream(s.backends, s.retry, s.cooldown, client=self._http_client, metrics=self.metrics,
                                 max_answer_bytes=s.limits.max_answer_bytes)
        if self.traffic is not None:
            await self.traffic.start()
        # load and warm in the background: /health answers at once, /ready says when routing works
        self._startup = asyncio.get_running_loop().create_task(self._load_and_warm(), name="routerzoo-startup")

    async def stop(self) -> None:
        for task in (self._startup,):
            if task is not None and not task.done():
                task.cancel()
        for watcher in (self.watcher, self.policy_watcher):
            if watcher is not None:
                await watcher.stop()
        if self.rollout is not None:
            await self.rollout.stop_watchers()
        if self.feedback is not None:  # before the batcher: its last batch is learnt in the prediction thread
            await self.feedback.stop()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.rollout is not None:
            await asyncio.to_thread(self.rollout.stop)
        if self.traffic is not None:  # last: every request has been recorded
            await self.traffic.stop()

    async def _load_and_warm(self) -> None:
        s = self.settings
        try:
            await self.batcher.run_in_worker(self._set_threads)
            if self.cascade is not None:
                if self.cascade.policy is None:
                    await self.batcher.run_in_worker(self.cascade.load)
                # loads the scorer's encoder in the prediction thread, where every later use runs
                await self.batcher.run_in_worker(self.cascade.warm)
                self._watch_policy()
                if not s.router and self._initial is None:  # a cascade alone: no router to load
                    self.ready = True
                    log.info("serving a cascade %s as %r", self.cascade.describe(), s.name)
                    return
            initial = self._initial
            if isinstance(initial, LoadedRouter):
                loaded = initial
            elif initial is not None:
                loaded = prepare_router(initial, s, source=s.router)
            else:
                loaded = await asyncio.to_thread(load_for_serving, s.router, s)
            await self.warm(loaded.router)
            if self.feedback is not None:  # restore what feedback taught it before it routes
                await self.feedback.attach(loaded)
            if self.rollout is not None:  # before ready: the canary's share holds from the first request
                await self.rollout.start(loaded)
            self.holder.swap(loaded)
            self.ready = True
            log.info("serving %s (%s router, candidates %s) as %r", loaded.label, loaded.router.kind,
                     loaded.routable, s.name)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the server stays up and reports not ready
            log.exception("could not load the router %s; /ready stays 503", s.router or "(given)")
            return
        if parse_alias_uri(s.router) is not None and s.reload.poll_interval_s > 0:
            self.watcher = AliasWatcher(s, self.holder, self.warm, self.metrics,
                                        before_swap=self.feedback.attach if self.feedback is not None else None)
            self.watcher.start()

    def _watch_policy(self) -> None:
        """Follow ``cascade.policy: models:/NAME@ALIAS``: a moved alias hot-reloads the policy."""
        if parse_alias_uri(self.cascade.config.policy or "") is not None and self.settings.reload.poll_interval_s > 0:
            from routerzoo.serving.reload import PolicyWatcher

            self.policy_watcher = PolicyWatcher(self.cascade, self.settings, metrics=self.metrics)
            self.policy_watcher.start()

    def _set_threads(self) -> None:
        if self.settings.threads:
            from routerzoo.routers.encoders.encoder import set_threads

            set_threads(self.settings.threads)

    async def warm(self, router) -> None:
        """One prediction in the prediction thread: loads the encoder and compiles kernels before traffic."""
        await self.batcher.run_in_worker(router.predict, ["Warm-up: what is 2 + 2?"])

    def _on_swap(self, loaded: LoadedRouter) -> None:
        self.metrics.set_router(loaded.name, loaded.router.kind, loaded.version or "-")

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)

    # -- requests --------------------------------------------------------------------------------
    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.limits.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes",
                               code="request_too_large")
        chunks, total = [], 0
        timeout = self.settings.limits.body_timeout_s
        try:
            async with asyncio.timeout(timeout):
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > limit:
                        raise RequestError(413, f"request body exceeds the limit of {limit} bytes",
                                           code="request_too_large")
                    chunks.append(chunk)
        except ClientDisconnect:
            raise RequestError(400, "the client disconnected while sending the body", code="client_disconnected") from None
        except TimeoutError:
            raise RequestError(408, f"the request body did not arrive within {timeout:g} s", code="body_timeout",
                               headers={"connection": "close"}) from None
        admit = request.scope.get(_ADMIT_KEY)
        if admit is not None:
            admit()  # the in-flight cap counts from here
        return b"".join(chunks)

    async def handle(self, request: Request, endpoint: str) -> Response:
        """``POST /v1/chat/completions`` (``endpoint="chat"``) and ``/v1/completions``.

        Once the body is in, the rest runs under the request's deadline and is cancelled when the
        client disconnects, upstream call included (an abandoned request spends no more tokens).
        """
        rid = request.scope.get(_REQUEST_ID_KEY) or uuid.uuid4().hex
        with self.batcher.arrival() as arrival:
            body = await self.read_body(request)
            deadline = time.monotonic() + self.settings.limits.deadline_s
            task = asyncio.current_task()
            left = asyncio.Event()

            async def watch() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                left.set()
                task.cancel()

            watcher = asyncio.get_running_loop().create_task(watch())
            try:
                return await self._answer(body, endpoint, rid, arrival, deadline)
            except asyncio.CancelledError:
                if left.is_set() and task.uncancel() == 0:  # the client left; the server is not stopping
                    log.info("request %s: the client disconnected; its upstream call was cancelled", rid)
                    return Response(status_code=499)  # nginx's "client closed request": for the metrics only
                raise
            finally:
                watcher.cancel()

    async def _answer(self, body: bytes, endpoint: str, rid: str, arrival, deadline: float) -> Response:
        t0 = time.perf_counter()
        loaded = self.holder.current  # read once: a hot reload does not affect this request
        s = self.settings
        payload = decode_body(body)
        req = parse_request(payload, endpoint, s.routing_input)
        note(requested_model=req.model, stream=req.stream, text=req.text)
        if self.rollout is not None and req.model == s.name:
            loaded = self.rollout.pick(loaded, req.payload, req.text)
        headers = {"x-routerzoo-request-id": rid}
        if req.model == s.name and self.cascade is not None:
            arrival.release()  # a cascade asks the router nothing
            if not self.ready:
                raise RequestError(503, "the cascade is still loading; retry shortly (see /ready)",
                                   type="server_error", code="not_ready")
            order, routed = None, False
        elif req.model == s.name:
            if loaded is None:
                raise RequestError(503, "the router is still loading; retry shortly (see /ready)",
                                   type="server_error", code="not_ready")
            policy = resolve_policy(loaded, req.options, s)
            try:
                quality, cost = await self.batcher.predict(loaded.router, req.text, arrival)
            except (UnicodeError, ValueError, TypeError) as exc:  # this prompt alone (the batcher isolates it)
                log.warning("request %s: the router cannot read this text: %s", rid, type(exc).__name__)
                raise RequestError(400, f"the router cannot read this request's text ({type(exc).__name__})",
                                   param="messages" if endpoint == "chat" else "prompt",
                                   code="unroutable_text") from None
            except Exception as exc:  # noqa: BLE001 - the router itself failing
                log.error("request %s: routing failed: %s", rid, type(exc).__name__)
                raise RequestError(503, "routing failed; retry the request", type="server_error",
                                   code="routing_failed") from None
            order = preference_order(loaded, policy, quality, cost)
            self.metrics.routing_latency.observe(time.perf_counter() - t0)
            self.metrics.decisions.labels(order[0]).inc()
            # the candidates this server can route to: a model without a backend is not an option for
            # the client (the request log keeps every score, for training)
            headers["x-routerzoo-scores"] = json.dumps(
                {m: round(float(v), 4) for m, v, ok in zip(loaded.router.models, quality, loaded.mask, strict=True) if ok},
                separators=(",", ":"))
            headers["x-routerzoo-router"] = loaded.label
            note(router=loaded.label, router_version=loaded.version or None, chosen=order[0],
                 scores={m: float(v) for m, v in zip(loaded.router.models, quality, strict=True)})
            if self.rollout is not None:
                self.rollout.observe(rid, loaded, req.text, order[0])
            routed = True
        elif req.model in s.backends:
            arrival.release()  # no prediction needed: the batcher need not wait for this one
            order, routed = [req.model], False
        else:
            raise RequestError(404, f"the model {_clip(req.model)!r} does not exist; models: "
                                    f"{[s.name, *s.backends]}", param="model", code="model_not_found")
        if order is None:  # mode: cascade, the served name
            return await self.cascade.handle(req, endpoint, headers, rid, loaded, deadline)
        if s.logging.log_prompts:
            log.info("request %s: routed to %s (order %s); text: %r", rid, order[0], order, req.text[:2000])
        else:
            log.debug("request %s: routed to %s (order %s)", rid, order[0], order)
        return await self.dispatch(req, order, routed, endpoint, headers, rid, loaded, deadline)

    def _context_window(self, model: str) -> int:
        return self.settings.backends[model].context_window

    async def dispatch(self, req: ParsedRequest, order: list[str], routed: bool, endpoint: str,
                       headers: dict, rid: str, loaded: LoadedRouter | None, deadline: float) -> Response:
        """Send the request along ``order`` until a backend answers, before ``deadline`` (monotonic)."""
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        upstream = self.upstream
        if routed:
            # skip backends cooling down, unless all are: then trying beats refusing
            order = [m for m in order if upstream.available(m)] or order
            if not self.settings.retry.fallback:
                order = order[:1]
        forwarded = {k: v for k, v in req.payload.items() if k != "routerzoo"}
        failures: list[BackendFailed] = []
        queue = list(order)
        while queue:
            model = queue.pop(0)
            cfg = self.settings.backends[model]
            forwarded["model"] = cfg.model or model
            try:
                answer = await upstream.call(model, path, _dumps(forwarded), stream=req.stream, request_id=rid,
                                             deadline=deadline)
            except BackendFailed as exc:
                failures.append(exc)
                if exc.last.reason == "deadline":
                    break
                if queue:
                    self.metrics.fallbacks.labels(model, queue[0]).inc()
                    log.info("request %s: %s failed (%s); falling back to %s", rid, model, exc.last.reason, queue[0])
                continue
            if isinstance(answer, Answer) and answer.context_exceeded and routed:
                # only a model with a longer declared context can take this prompt
                longer = [m for m in queue if self._context_window(m) > self._context_window(model)]
                if longer:
                    self.metrics.fallbacks.labels(model, longer[0]).inc()
                    log.info("request %s: the prompt exceeds %s's context; falling back to %s", rid, model, longer[0])
                    queue = longer
                    continue
            headers["x-routerzoo-model"] = model
            note(model=model, fallbacks=[f.model for f in failures])
            if routed and self.feedback is not None:
                self.feedback.record(rid, req.text, model)
            if isinstance(answer, StreamAnswer):
                self.metrics.upstream_latency.labels(model).observe(answer.seconds)
                return StreamingResponse(self._relay(answer, model, loaded, rid, deadline), media_type="text/event-stream",
                                         headers={**headers, "cache-control": "no-cache",
                                                  "x-accel-buffering": "no"})  # proxies: do not buffer SSE
            return self._complete(answer, model, loaded, headers)
        note(fallbacks=[f.model for f in failures])
        tried = ", ".join(f"{f.model} ({f.last.reason})" for f in failures)
        if failures and failures[-1].last.reason == "deadline":
            raise RequestError(504, f"no answer within the request's deadline of {self.settings.limits.deadline_s:g} s"
                                    f" (tried: {tried})", type="upstream_error", code="deadline_exceeded")
        if failures and all(f.all_rate_limited for f in failures):
            raise RequestError(429, f"every backend tried is rate limiting: {tried}", type="rate_limit_error",
                               code="upstream_rate_limited")
        raise RequestError(502, f"no backend could answer: {tried}", type="upstream_error", code="upstream_failed")

    def _usage_cost(self, usage, model: str, loaded: LoadedRouter | None) -> float | None:
        """Record tokens and estimated cost from a ``usage`` object; the cost in USD, or None."""
        from routerzoo.serving.metrics import record_usage

        return record_usage(self.metrics, usage, model, self._price(model, loaded))

    def _price(self, model: str, loaded: LoadedRouter | None) -> tuple[float, float] | None:
        b = self.settings.backends.get(model)
        if b is not None and b.prices is not None:
            return b.prices.input, b.prices.output
        if loaded is not None:
            return loaded.prices.get(model)
        return None

    def _complete(self, answer: Answer, model: str, loaded: LoadedRouter | None, headers: dict) -> Response:
        body = answer.body
        if 200 <= answer.status < 300:
            self.metrics.upstream_latency.labels(model).observe(answer.seconds)
            body["model"] = model
            usd = self._usage_cost(body.get("usage"), model, loaded)
            if usd is not None:
                headers["x-routerzoo-cost-usd"] = f"{usd:.8f}"
        return Response(_dumps(body), status_code=answer.status, media_type="application/json", headers=headers)

    async def _relay(self, answer: StreamAnswer, model: str, loaded: LoadedRouter | None, rid: str,
                     deadline: float | None = None):
        """The stream to the client: upstream events with ``model`` rewritten; an error event if it
        breaks or the deadline passes (a stream trickling a byte at a time ends too)."""
        usage = None

        def rewrite(event: bytes) -> bytes:
            nonlocal usage
            data = event_data(event)
            if data is None:  # a comment / keep-alive
                return event + b"\n\n"
            if data.strip() == b"[DONE]":
                return b"data: [DONE]\n\n"
            obj = jsonio.loads_answer(data)  # ValueError → broken stream
            if not isinstance(obj, dict):
                raise ValueError("a stream event that is not a JSON object")
            if "model" in obj:
                obj["model"] = model
            if isinstance(obj.get("usage"), dict):
                usage = obj["usage"]
            return b"data: " + _dumps(obj) + b"\n\n"

        try:
            yield rewrite(answer.first)
            while True:
                try:
                    if deadline is None:
                        event = await anext(answer.rest)
                    else:
                        async with asyncio.timeout_at(_loop_time(deadline)):
                            event = await anext(answer.rest)
                except StopAsyncIteration:
                    break
                yield rewrite(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream already started: end it with an error event
            reason = ("deadline_exceeded" if isinstance(exc, TimeoutError) else "bad_stream_event"
                      if isinstance(exc, ValueError) else "stream_broken")
            self.metrics.upstream_errors.labels(model, reason).inc()
            log.warning("request %s: stream from %s broke after it started (%s)", rid, model, type(exc).__name__)
            yield b"data: " + _dumps(error_body(f"the stream from {model} broke: {type(exc).__name__}",
                                                "upstream_error", None, reason)) + b"\n\n"
        finally:
            await answer.aclose()
            self._usage_cost(usage, model, loaded)

    # -- read-only endpoints ---------------------------------------------------------------------
    def models(self) -> dict:
        s = self.settings
        entries = [{"id": s.name, "object": "model", "created": 0, "owned_by": "routerzoo"}]
        entries += [{"id": name, "object": "model", "created": 0, "owned_by": "routerzoo-backend"} for name in s.backends]
        return {"object": "list", "data": entries}


# -- admission middleware -------------------------------------------------------------------------
class AdmissionMiddleware:
    """Pure ASGI middleware: request id, API keys, in-flight cap, per-request metrics, last-resort errors.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so streamed responses pass straight through and the
    in-flight count covers a stream until its last byte.
    """

    def __init__(self, app, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        st = self.state
        rid = uuid.uuid4().hex
        scope[_REQUEST_ID_KEY] = rid
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else "other"
        status_box = [500]
        started = [False]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                started[0] = True
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                if not any(k == b"x-routerzoo-request-id" for k, _ in headers):
                    headers.append((b"x-routerzoo-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        guarded = not path.startswith(_OPEN_PATHS) or (path == "/metrics" and st.settings.auth.protect_metrics)
        if guarded and st.key_hashes and not self._authorized(scope):
            await self._refuse(send_wrapper, RequestError(401, "invalid or missing API key; send Authorization: Bearer KEY",
                                                          code="invalid_api_key"))
            st.metrics.requests.labels(endpoint, "401").inc()
            return
        admitted = [False]
        if scope.get("method") == "POST" and path.startswith("/v1/"):
            def admit() -> None:
                # called by the handler once the body is in: a slow upload holds no slot while it trickles
                if admitted[0]:
                    return
                if st.in_flight >= st.settings.limits.max_in_flight:
                    raise RequestError(429, "too many requests in flight; retry shortly", type="rate_limit_error",
                                       code="too_many_requests", headers={"retry-after": "1"})
                admitted[0] = True
                st.in_flight += 1
                st.metrics.in_flight.inc()

            scope[_ADMIT_KEY] = admit
        record = st.traffic.begin(scope) if st.traffic is not None else None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - never a traceback to the client
            log.exception("request %s: unexpected error", rid)
            status_box[0] = 500
            if not started[0]:
                await self._refuse(send_wrapper, RequestError(500, f"internal error (request id {rid})",
                                                              type="server_error", code="internal_error"))
        finally:
            if record is not None:
                st.traffic.end(record, rid, status_box[0])
            st.metrics.requests.labels(endpoint, str(status_box[0])).inc()
            if admitted[0]:  # last: a request out of flight has been counted
                st.in_flight -= 1
                st.metrics.in_flight.dec()

    def _authorized(self, scope) -> bool:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return hashlib.sha256(token.strip().encode()).digest() in self.state.key_hashes
        return False

    @staticmethod
    async def _refuse(send, exc: RequestError, headers: dict | None = None) -> None:
        body = _dumps(error_body(exc.message, exc.type, exc.param, exc.code))
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        if exc.status == 401:
            raw.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": exc.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


# -- the app --------------------------------------------------------------------------------------
def create_app(settings: ServeConfig, router=None, http_client=None) -> FastAPI:
    """The router server as a FastAPI app.

    Args:
        settings: the serve config (``settings.router`` is loaded at start-up when ``router`` is None).
        router: a loaded :class:`~routerzoo.routers.Router` or a prepared
            :class:`~routerzoo.serving.loader.LoadedRouter` to serve.
        http_client: an ``httpx.AsyncClient`` to call backends with (else one is created and closed
            with the app).

    Raises:
        ConfigError: auth keys configured but missing from the environment.
    """
    state = ServerState(settings, router, http_client)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="routerzoo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.routerzoo = state

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(exc.detail), kind, None, None), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse(error_body("invalid request", "invalid_request_error", None, None), status_code=400)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await state.handle(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await state.handle(request, "completions")

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        if state.traffic is not None:  # stored for every router; a bandit learns from it too
            return await state.traffic.feedback(request)
        if state.feedback is None:
            raise RequestError(404, "feedback is off; add a feedback section to the serve config", code="feedback_off")
        return await state.feedback.handle(request)

    @app.get("/v1/models")
    async def list_models():
        return state.models()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        current = state.holder.current
        if state.ready and current is None and state.cascade is not None:  # a cascade with no router
            return {"status": "ready", "cascade": state.cascade.describe()}
        if not state.ready or current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        # name and version, never the artifact's path on this host
        return {"status": "ready", "router": {"name": current.name, "version": current.version,
                                              "kind": current.router.kind, "routable": current.routable}}

    @app.get("/health/backends")
    async def backend_health():
        view = state.upstream.health() if state.upstream is not None else {}
        healthy = [n for n, b in view.items() if b["state"] == "healthy"]
        status = "ok" if len(healthy) == len(view) else "degraded" if healthy else "down"
        return JSONResponse({"status": status, "backends": view}, status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(AdmissionMiddleware, state=state)
    return app
