"""The server's cascade mode: call the chain's models in order until the deferral scorer accepts.

With ``mode: cascade`` (see :class:`~routerzoo.serving.cascade_config.CascadeServeConfig`) a request
naming the served model runs the cascade instead of the router:

1. stage k sends the request to ``chain[k]``'s backend, *not streamed*, with token logprobs
   requested when the scorer reads them (``logprobs: true`` + ``top_logprobs`` for chat,
   ``logprobs: N`` for completions);
2. the first choice's text and token logprobs are scored (in a worker thread: a learned scorer may
   run an encoder); ``score >= thresholds[k]`` accepts the answer, anything else (a NaN score, a
   scorer error, a backend that failed after its retries) escalates to stage k + 1;
3. the last stage is sent as the client asked, so a streamed request streams the last stage's
   answer through; an answer accepted at an early stage is replayed to a streaming client as
   server-sent events (one content chunk, a finish chunk, usage if asked, ``[DONE]``);
4. the answer carries ``x-routerzoo-model`` (the accepted model), ``x-routerzoo-calls`` (JSON: every
   call made, in order, with its score, estimated USD cost and outcome) and ``x-routerzoo-cost-usd``
   (the summed estimate over every call; for a streamed last stage it covers only the calls before
   the stream, as headers precede the stream's usage).

Logprobs the client did not ask for are removed from the answer it gets. Metrics: calls, deferrals
and acceptances per stage (``routerzoo_cascade_*``), in the server's own registry.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Counter

from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.routers.policies.clients import Completion
from routerzoo.serving import jsonio
from routerzoo.serving.cascade_config import CascadeServeConfig
from routerzoo.serving.upstream import Answer, BackendFailed, StreamAnswer

log = logging.getLogger("routerzoo.serving")

__all__ = ["CascadeServer", "extract_answer", "completion_events"]


_dumps = jsonio.dumps


def extract_answer(body: dict, chat: bool) -> tuple[str | None, np.ndarray | None]:
    """The first choice's text and token logprobs from an OpenAI-shaped answer.

    Args:
        body: a chat completion or text completion object.
        chat: which of the two it is.

    Returns:
        (text or None, (t,) float64 logprobs or None): chat reads ``choices[0].logprobs.content[*].logprob``,
        completions ``choices[0].logprobs.token_logprobs`` (nulls, e.g. an echoed first token, dropped).
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, None
    choice = choices[0]
    if chat:
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        text = message.get("content") if isinstance(message.get("content"), str) else None
    else:
        text = choice.get("text") if isinstance(choice.get("text"), str) else None
    lp = choice.get("logprobs")
    values = None
    if isinstance(lp, dict):
        if chat and isinstance(lp.get("content"), list):
            values = [t.get("logprob") for t in lp["content"] if isinstance(t, dict)]
        elif not chat and isinstance(lp.get("token_logprobs"), list):
            values = lp["token_logprobs"]
    if values is None:
        return text, None
    good = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return text, (np.asarray(good, dtype=np.float64) if good else None)


def sample_texts(body: dict, chat: bool) -> list[str | None]:
    """Every choice's text, in choice order (the k samples a consistency scorer compares)."""
    out = []
    for choice in body.get("choices") or []:
        if not isinstance(choice, dict):
            out.append(None)
        elif chat:
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            out.append(message.get("content") if isinstance(message.get("content"), str) else None)
        else:
            out.append(choice.get("text") if isinstance(choice.get("text"), str) else None)
    return out


def completion_events(body: dict, chat: bool, include_usage: bool) -> list[bytes]:
    """A complete answer replayed as the server-sent events a streaming backend would have sent.

    One chunk per choice carrying its whole content (chat: ``delta`` with role, content and tool
    calls), one chunk with the finish reasons, the usage chunk when asked, then ``[DONE]``.
    """
    base = {"id": body.get("id", "routerzoo-cascade"), "created": body.get("created", int(time.time())),
            "model": body.get("model"), "object": "chat.completion.chunk" if chat else "text_completion"}
    content, finish = [], []
    for i, choice in enumerate(body.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", i)
        if chat:
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            delta = {"role": message.get("role", "assistant"), "content": message.get("content")}
            if message.get("tool_calls"):
                delta["tool_calls"] = [{**tc, "index": k} for k, tc in enumerate(message["tool_calls"])]
            part = {"index": index, "delta": delta, "finish_reason": None}
            end = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        else:
            part = {"index": index, "text": choice.get("text", ""), "finish_reason": None}
            end = {"index": index, "text": "", "finish_reason": choice.get("finish_reason")}
        if "logprobs" in choice:
            part["logprobs"] = choice["logprobs"]
        content.append(part)
        finish.append(end)
    events = [{**base, "choices": content}, {**base, "choices": finish}]
    if include_usage and isinstance(body.get("usage"), dict):
        events.append({**base, "choices": [], "usage": body["usage"]})
    return [b"data: " + _dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


class CascadeServer:
    """Runs the configured cascade for requests to the served name.

    Args:
        config: the cascade section of the serve config.
        state: the app's :class:`~routerzoo.serving.app.ServerState` (upstream, metrics, prices).

    :meth:`load` builds the deferral scorer (reading an artifact): call it at start-up, not per
    request.
    """

    def __init__(self, config: CascadeServeConfig, state):
        self.config = config
        self.state = state
        self.policy: CascadePolicy | None = None
        reg = state.metrics.registry
        self.calls = Counter("routerzoo_cascade_calls", "Cascade calls, by stage and model", ["stage", "model"],
                             registry=reg)
        self.deferrals = Counter("routerzoo_cascade_deferrals",
                                 "Cascade escalations, by stage, model and reason (score below threshold, "
                                 "unscorable answer, backend failure)", ["stage", "model", "reason"], registry=reg)
        self.accepted = Counter("routerzoo_cascade_accepted", "Answers returned by the cascade, by stage and model",
                                ["stage", "model"], registry=reg)
        self._prices: dict[str, tuple[float, float]] | None = None
        #: registry version of ``config.policy`` in service ("" for a folder or a configured chain)
        self.version = ""

    def load(self) -> None:
        """Build the scorer (kind + config, or an artifact) and the policy; UserError when they do not fit."""
        from routerzoo.routers.deferral.artifact import resolve_deferral

        c = self.config
        if c.policy:  # a trained sequential policy (calibrated cascade, MDP router): models from the artifact
            from routerzoo.routers.core.loader import load
            from routerzoo.serving.loader import alias_version, parse_alias_uri

            source, tracking_uri = c.policy, self.state.settings.tracking_uri or None
            alias = parse_alias_uri(source)
            if alias is not None:  # pinned by number: the alias may move during the download
                self.version = alias_version(*alias, tracking_uri)
                source = f"models:/{alias[0]}/{self.version}"
            policy = load(source, role="policy", tracking_uri=tracking_uri)
            self.check(policy, f"cascade.policy {c.policy}")
            self.policy = policy
            return
        scorer = resolve_deferral(c.scorer, c.scorer_config)
        self.policy = CascadePolicy(CascadeConfig(chain=list(c.chain), thresholds=list(c.thresholds)), scorer)

    def check(self, policy, where: str) -> None:
        """ConfigError when ``policy`` calls a model that has no backend."""
        from routerzoo.errors import ConfigError

        missing = [m for m in policy.models if m not in self.state.settings.backends]
        if missing:
            raise ConfigError(f"{where}: model(s) {missing} have no backend; "
                              f"backends: {sorted(self.state.settings.backends)}")

    def warm(self, policy=None) -> None:
        """Run ``policy`` (default: the one in service) and its scorer once, loading their encoders.

        Called in the prediction thread before ``/ready`` says so, and by the hot reload before a
        new version takes traffic.
        """
        policy = policy if policy is not None else self.policy
        steps = policy.begin("Warm-up: what is 2 + 2?")  # the MDP router embeds the prompt
        scorer = getattr(policy, "scorer", None)
        if scorer is not None:
            try:  # a scorer that wants other inputs (k samples) warms on its first request instead
                scorer.predict(["Warm-up: what is 2 + 2?"], ["4"], [np.array([-0.1, -0.2])])
            except Exception as exc:  # noqa: BLE001
                log.info("cascade: warm-up of the %s scorer skipped (%s)", getattr(scorer, "kind", "?"),
                         type(exc).__name__)
        del steps

    def describe(self) -> dict:
        """What ``/ready`` shows."""
        c = self.config
        if c.policy:
            return {"policy": getattr(self.policy, "kind", None), "name": Path(c.policy).name,
                    **({"version": self.version} if self.version else {}),
                    "models": list(self.policy.models) if self.policy else None}
        return {"chain": list(c.chain), "thresholds": list(c.thresholds),
                "scorer": getattr(self.policy.scorer, "kind", c.scorer) if self.policy else c.scorer}

    # -- prices -------------------------------------------------------------------------------------
    def price(self, model: str, loaded, policy=None) -> tuple[float, float] | None:
        """USD per 1M (input, output) tokens: backend override, else the price file, else the prices the
        policy was calibrated with (a cascade artifact keeps them), else the router's."""
        b = self.state.settings.backends.get(model)
        if b is not None and b.prices is not None:
            return b.prices.input, b.prices.output
        if self._prices is None:
            self._prices = {}
            path = self.state.settings.prices
            if path:
                from routerzoo.data.prices import load_price_file

                self._prices = {m: (float(p.input), float(p.output)) for m, p in load_price_file(path).items()}
        if model in self._prices:
            return self._prices[model]
        own = (getattr(policy, "prices", None) or {}).get(model)
        if own is not None:
            return float(own["input"]), float(own["output"])
        return loaded.prices.get(model) if loaded is not None else None

    def usage_cost(self, usage, model: str, loaded, policy=None) -> float | None:
        """Record tokens and the estimated cost of one call's ``usage``; the USD cost, or None."""
        from routerzoo.serving.metrics import record_usage

        return record_usage(self.state.metrics, usage, model, self.price(model, loaded, policy))

    # -- one request ----------------------------------------------------------------------------------
    def _scored_payload(self, payload: dict, chat: bool, scorer) -> dict:
        """The body for a scored (non-last) stage: not streamed, logprobs requested if ``scorer`` reads them."""
        body = {k: v for k, v in payload.items() if k not in ("routerzoo", "stream", "stream_options")}
        samples = int(getattr(scorer, "samples", 1) or 1)
        if samples > 1:  # a consistency scorer compares k sampled answers
            body["n"] = samples
            body["temperature"] = scorer.config.temperature
        if getattr(scorer, "needs_logprobs", False):
            top = self.config.top_logprobs
            if chat:
                body["logprobs"] = True
                asked = payload.get("top_logprobs")
                want = max(top, asked if isinstance(asked, int) and not isinstance(asked, bool) else 0)
                if want:
                    body["top_logprobs"] = want
            else:
                asked = payload.get("logprobs")
                asked = asked if isinstance(asked, int) and not isinstance(asked, bool) else 0
                body["logprobs"] = max(1, top, asked)
        return body

    async def _score(self, scorer, prompt: str, text: str | None, lps: np.ndarray | None, rid: str) -> float:
        try:
            # the prediction thread: a learned scorer's encoder is not thread-safe and must not race the router's
            s = await self.state.batcher.run_in_worker(scorer.predict, [prompt], [text], [lps])
            return float(np.asarray(s, dtype=np.float64).reshape(-1)[0])
        except Exception as exc:  # noqa: BLE001 - a scorer failure escalates; the request still gets an answer
            log.warning("request %s: deferral scorer failed (%s); escalating", rid, type(exc).__name__)
            return float("nan")

    async def handle(self, req, endpoint: str, headers: dict, rid: str, loaded, deadline: float | None = None) -> Response:
        """Answer one request to the served name with the sequential policy (cascade or MDP router).

        The policy's :class:`~routerzoo.routers.policies.base.Steps` say which model to call next;
        every answer that may still be rejected is fetched whole and scored, the one the policy
        will return whatever it is (``final``) is sent as the client asked (streamed through).

        Raises:
            RequestError: 502 / 429 when no call could be answered.
        """
        from routerzoo.serving.app import RequestError

        chat = endpoint == "chat"
        path = "/chat/completions" if chat else "/completions"
        upstream = self.state.upstream
        # read once: a hot reload swapping self.policy mid-request must not mix two versions' scorers
        policy = self.policy
        scorer = getattr(policy, "scorer", None)
        client_logprobs = bool(req.payload.get("logprobs"))
        if req.options:
            raise RequestError(400, f"routing options do not apply in mode: cascade (a {policy.kind} policy)",
                               param="routerzoo")
        calls: list[dict] = []
        failures: list[BackendFailed] = []
        total = 0.0
        headers["x-routerzoo-router"] = policy.kind

        def finish(model: str, cost_known: bool) -> dict:
            headers["x-routerzoo-model"] = model
            headers["x-routerzoo-calls"] = json.dumps(calls, separators=(",", ":"))
            if cost_known:
                headers["x-routerzoo-cost-usd"] = f"{total:.8f}"
            return headers

        try:
            steps = await self.state.batcher.run_in_worker(policy.begin, req.text)
        except Exception as exc:  # noqa: BLE001 - e.g. the MDP's encoder failing on an odd text
            log.error("request %s: the %s policy failed to start: %s", rid, policy.kind, type(exc).__name__)
            raise RequestError(503, "routing failed; retry the request", type="server_error",
                               code="routing_failed") from None
        cost_known = True
        last_ok: tuple[str, Answer] | None = None  # the latest answer received (what "accept" returns)
        stage = -1
        nxt = steps.next_call()
        while nxt is not None:
            model, final = nxt
            stage += 1
            label = str(stage)
            cfg = self.state.settings.backends[model]
            self.calls.labels(label, model).inc()
            if final:
                body = {key: v for key, v in req.payload.items() if key != "routerzoo"}
            else:
                body = self._scored_payload(req.payload, chat, scorer)
            body["model"] = cfg.model or model
            try:
                answer = await upstream.call(model, path, _dumps(body), stream=req.stream and final, request_id=rid,
                                             deadline=deadline)
            except BackendFailed as exc:
                failures.append(exc)
                calls.append({"model": model, "error": exc.last.reason})
                if exc.last.reason == "deadline":
                    break
                self.deferrals.labels(label, model, "backend_failed").inc()
                log.info("request %s: %s stage %d (%s) failed (%s)", rid, policy.kind, stage, model, exc.last.reason)
                steps.observe(model, None, None)
                nxt = steps.next_call()
                continue
            if isinstance(answer, StreamAnswer):  # the final call, streamed through
                self.state.metrics.upstream_latency.labels(model).observe(answer.seconds)
                calls.append({"model": model, "score": None, "cost_usd": None, "accepted": True})
                self.accepted.labels(label, model).inc()
                finish(model, cost_known=False)
                headers["x-routerzoo-cost-usd-before-stream"] = f"{total:.8f}"
                return StreamingResponse(self.state._relay(answer, model, loaded, rid, deadline),
                                         media_type="text/event-stream",
                                         headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
            if not 200 <= answer.status < 300:  # the request's own fault (4xx): no other model would do better
                calls.append({"model": model, "status": answer.status})
                finish(model, cost_known=False)
                return Response(_dumps(answer.body), status_code=answer.status, media_type="application/json",
                                headers=headers)
            self.state.metrics.upstream_latency.labels(model).observe(answer.seconds)
            usd = self.usage_cost(answer.body.get("usage"), model, loaded, policy)
            if usd is None:
                cost_known = False
            else:
                total += usd
            score = None
            text, lps = extract_answer(answer.body, chat)
            if not final and scorer is not None:
                if getattr(scorer, "samples", 1) > 1:
                    text = sample_texts(answer.body, chat)
                    keep = req.payload.get("n") if isinstance(req.payload.get("n"), int) else 1
                    answer.body["choices"] = (answer.body.get("choices") or [])[:max(1, keep)]
                score = await self._score(scorer, req.text, text, lps, rid)
            comp = Completion(text if isinstance(text, str) else (text[0] if text else None), lps, usd or 0.0)
            steps.observe(model, comp, None if score is None or math.isnan(score) else score)
            calls.append({"model": model, "score": None if score is None or math.isnan(score) else round(score, 6),
                          "cost_usd": None if usd is None else round(usd, 10), "accepted": False})
            last_ok = (model, answer)
            nxt = steps.next_call()
            if nxt is not None:  # this answer was passed over: a deferral at this stage
                unscored = calls[-1]["score"] is None and scorer is not None
                reason = "unscorable" if unscored else "below_threshold" if policy.defers_by_threshold else "policy"
                self.deferrals.labels(label, model, reason).inc()
        if last_ok is None:
            tried = ", ".join(f"{f.model} ({f.last.reason})" for f in failures)
            if failures and failures[-1].last.reason == "deadline":
                raise RequestError(504, f"no {policy.kind} stage answered within the request's deadline (tried: {tried})",
                                   type="upstream_error", code="deadline_exceeded")
            if failures and all(f.all_rate_limited for f in failures):
                raise RequestError(429, f"every {policy.kind} stage is rate limiting: {tried}", type="rate_limit_error",
                                   code="upstream_rate_limited")
            raise RequestError(502, f"no {policy.kind} stage could answer: {tried}", type="upstream_error",
                               code="upstream_failed")
        model, answer = last_ok
        for c in reversed(calls):
            if c.get("model") == model and "accepted" in c:
                c["accepted"] = True
                break
        self.accepted.labels(str(self._stage_of(calls, model)), model).inc()
        return self._answer(req, answer, model, chat, client_logprobs, finish, cost_known)

    @staticmethod
    def _stage_of(calls: list[dict], model: str) -> int:
        """Index in ``calls`` of the last call to ``model``."""
        return max(i for i, c in enumerate(calls) if c.get("model") == model)

    def _answer(self, req, answer: Answer, model: str, chat: bool, client_logprobs: bool, finish, cost_known: bool):
        """The accepted (buffered) answer to the client: JSON, or replayed as events for a stream."""
        out = answer.body
        out["model"] = model
        if not client_logprobs:
            for choice in out.get("choices") or []:
                if isinstance(choice, dict) and "logprobs" in choice:
                    choice["logprobs"] = None
        headers = finish(model, cost_known)
        if req.stream:
            include_usage = bool((req.payload.get("stream_options") or {}).get("include_usage"))
            events = completion_events(out, chat, include_usage)

            async def replay():
                for e in events:
                    yield e

            return StreamingResponse(replay(), media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
        return Response(_dumps(out), status_code=answer.status, media_type="application/json", headers=headers)
