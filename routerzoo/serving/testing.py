"""A small OpenAI-compatible backend with fault injection, and a way to run ASGI apps on loopback.

Used by the serving tests, ``bench/serving.py`` and demos; no part of the server imports it.

:class:`FakeBackend` answers ``POST /v1/chat/completions``, ``POST /v1/completions`` (JSON or
``stream: true`` SSE) and ``GET /v1/models`` at once, naming itself in every answer, and records
what it received. Faults are injected per request from a script (``backend.script("500", "500")``:
the next two requests fail, then it answers) or for every request (``backend.mode = "500"``):

=================  ===================================================================
``slow:S``         answer after S seconds
``500``            HTTP 500 with an OpenAI error body
``429:S``          HTTP 429 with ``Retry-After: S``
``drop``           send headers and half a body, then close the connection
``garbage``        HTTP 200 with a body that is not JSON
``notopenai``      HTTP 200 with JSON that is not a completion (``{"hello": "world"}``)
``broken_stream``  (streams) two events, then close the connection mid-stream
``trickle:S``      HTTP 200, then the answer one byte every S seconds
``hang``           never answer; counts the client leaving in :attr:`FakeBackend.disconnects`
``stall``          (streams) the first event, then nothing until the client leaves
``401`` / ``403``  the backend refuses the key
``context``        HTTP 400: the prompt exceeds the model's context (OpenAI's wording)
``crlf``           (streams) events separated by CRLF, sent one byte per write
=================  ===================================================================

A chat request with ``logprobs: true`` gets token logprobs (deterministic per model and prompt).
``reply`` replaces the answer text: ``{letter}`` becomes a letter A-J and ``{rating}`` a number 1-10,
both picked by a hash of the model and prompt, so ``--reply "the answer is ({letter})"`` stands in
for a model answering multiple-choice questions and ``--reply "Rating: [[{rating}]]"`` for a judge.

Run one in its own process (``python -m routerzoo.serving.testing --name A [--reply TEXT]``): it
prints ``PORT <n>`` once listening, so a test can kill it for real.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import sys
import threading
import time
from collections import deque


def _words(text: str) -> int:
    return max(1, len(text.split()))


class FakeBackend:
    """An OpenAI-compatible ASGI app that answers at once (or as its faults say).

    Args:
        name: named in every answer's content (``"answer from NAME"``).
        record: keep the last this many request bodies in :attr:`received`.
        reply: the answer text instead of ``"answer from NAME"`` (``{letter}``, ``{rating}``: see
            the module docstring).
    """

    def __init__(self, name: str, record: int = 1000, reply: str | None = None):
        self.name = name
        self.reply = reply
        self.mode = "ok"
        self._script: deque[str] = deque()
        self.received: deque[dict] = deque(maxlen=record)
        self.count = 0
        self.disconnects = 0  # requests whose client left while this backend hung (``hang``)
        self._lock = threading.Lock()

    def script(self, *faults: str) -> None:
        """Faults for the next requests, one each, before answering normally again."""
        with self._lock:
            self._script.extend(faults)

    def _next_fault(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.mode

    # -- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            return await self._json(send, 200, {"object": "list", "data": [
                {"id": self.name, "object": "model", "created": 0, "owned_by": "fake"}]})
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            return await self._json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error",
                                                          "param": None, "code": None}})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return await self._json(send, 400, {"error": {"message": "body is not a JSON object",
                                                          "type": "invalid_request_error", "param": None, "code": None}})
        with self._lock:
            self.count += 1
            self.received.append(request)
        fault, _, arg = self._next_fault().partition(":")
        if fault == "slow":
            await asyncio.sleep(float(arg or 1.0))
        elif fault == "500":
            return await self._json(send, 500, {"error": {"message": "injected failure", "type": "server_error",
                                                          "param": None, "code": None}})
        elif fault == "429":
            return await self._json(send, 429, {"error": {"message": "slow down", "type": "rate_limit_error",
                                                          "param": None, "code": None}},
                                    [(b"retry-after", (arg or "1").encode())])
        elif fault == "hang":
            return await self._until_gone(receive)
        elif fault in ("401", "403"):
            return await self._json(send, int(fault), {"error": {"message": "invalid api key", "type": "authentication_error",
                                                                "param": None, "code": "invalid_api_key"}})
        elif fault == "context":
            return await self._json(send, 400, {"error": {
                "message": "This model's maximum context length is 4096 tokens. However, your messages resulted in "
                           "9000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        elif fault == "notopenai":
            return await self._json(send, 200, {"hello": "world"})
        elif fault == "trickle":
            gone = asyncio.get_running_loop().create_task(self._until_gone(receive))
            send = self._bytewise(send, float(arg or 1.0), False, gone)
        elif fault == "garbage":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b"<html>definitely not json"})
            return
        elif fault == "drop":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"id": "cut', "more_body": True})
            raise ConnectionAbortedError("injected: connection dropped")
        chat = scope["path"].endswith("/chat/completions")
        if request.get("stream"):
            return await self._stream(send, request, chat, broken=fault == "broken_stream", crlf=fault == "crlf",
                                      stall=(lambda: self._until_gone(receive)) if fault == "stall" else None)
        return await self._json(send, 200, self._completion(request, chat))

    def _text(self, request: dict, chat: bool) -> str:
        if chat:
            messages = request.get("messages") or [{}]
            last = messages[-1] if isinstance(messages[-1], dict) else {}
            content = last.get("content")
            return content if isinstance(content, str) else json.dumps(content)
        prompt = request.get("prompt")
        return prompt if isinstance(prompt, str) else json.dumps(prompt)

    def _digest(self, text: str) -> bytes:
        # per model and prompt, so two backends answer the same question differently, reproducibly
        return hashlib.sha256(f"{self.name}\0{text}".encode()).digest()

    def _answer(self, request: dict, chat: bool) -> str:
        if self.reply is None:
            return f"answer from {self.name}"
        d = self._digest(self._text(request, chat))
        return self.reply.replace("{letter}", "ABCDEFGHIJ"[d[0] % 10]).replace("{rating}", str(1 + d[1] % 10))

    def _logprobs(self, request: dict, chat: bool, answer: str) -> dict:
        """Chat-format logprobs of ``answer``'s words, each in (-3, 0]."""
        d = self._digest(self._text(request, chat))
        return {"content": [{"token": w, "logprob": -3.0 * d[2 + i % 30] / 256, "bytes": None, "top_logprobs": []}
                            for i, w in enumerate(answer.split())]}

    def _completion(self, request: dict, chat: bool) -> dict:
        answer = self._answer(request, chat)
        usage = {"prompt_tokens": _words(self._text(request, chat)), "completion_tokens": 3}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": f"fake-{self.count}", "created": int(time.time()), "model": request.get("model"), "usage": usage}
        if chat:
            message = {"role": "assistant", "content": answer}
            if request.get("tools"):
                tool = request["tools"][0].get("function", {}).get("name", "tool")
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": tool, "arguments": "{}"}}]}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            if request.get("logprobs") is True and message["content"] is not None:
                choice["logprobs"] = self._logprobs(request, chat, answer)
            return {**base, "object": "chat.completion", "choices": [choice]}
        return {**base, "object": "text_completion",
                "choices": [{"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}]}

    async def _until_gone(self, receive) -> None:
        """Wait for the client to leave, and count it."""
        while (await receive())["type"] != "http.disconnect":
            pass
        with self._lock:
            self.disconnects += 1

    @staticmethod
    def _bytewise(send, delay: float, crlf: bool, gone: asyncio.Task | None = None):
        """A ``send`` that writes each body byte on its own (after ``delay`` seconds), CRLF-separated if
        asked; it stops writing once ``gone`` (the client left) is done."""
        async def wrapped(message):
            if message["type"] != "http.response.body":
                return await send(message)
            body = message.get("body", b"")
            if crlf:
                body = body.replace(b"\n\n", b"\r\n\r\n")
            for i in range(len(body)):
                if gone is not None and gone.done():
                    return
                await send({"type": "http.response.body", "body": body[i:i + 1], "more_body": True})
                await asyncio.sleep(delay)
            if not message.get("more_body"):
                await send({"type": "http.response.body", "body": b""})
        return wrapped

    async def _stream(self, send, request: dict, chat: bool, broken: bool, crlf: bool = False, stall=None) -> None:
        if crlf:  # what sse-starlette sends, cut into one-byte writes so CRLFs straddle reads
            return await self._stream(self._bytewise(send, 0.0, True), request, chat, broken)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        first, *rest = self._answer(request, chat).split(" ")
        words = [first] + [f" {w}" for w in rest]
        created = int(time.time())
        for i, word in enumerate(words):
            if chat:
                delta = {"content": word} if i else {"role": "assistant", "content": word}
                chunk = {"id": "fake-stream", "object": "chat.completion.chunk", "created": created,
                         "model": request.get("model"), "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            else:
                chunk = {"id": "fake-stream", "object": "text_completion", "created": created,
                         "model": request.get("model"), "choices": [{"index": 0, "text": word, "finish_reason": None}]}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                        "more_body": True})
            if broken and i == 1:
                raise ConnectionAbortedError("injected: stream broken")
            if stall is not None:
                await stall()
                return
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": _words(self._text(request, chat)), "completion_tokens": 3}
            usage["total_tokens"] = usage["prompt_tokens"] + 3
            final = {"id": "fake-stream", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": created, "model": request.get("model"), "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(final).encode() + b"\n\n",
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    @staticmethod
    async def _json(send, status: int, obj, extra_headers=None) -> None:
        body = json.dumps(obj).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + list(extra_headers or [])})
        await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """Run an ASGI app with uvicorn in a background thread on 127.0.0.1 (random free port).

    Args:
        app: the ASGI app.
        port: port to bind; 0 picks a free one.
        graceful_s: uvicorn's graceful-shutdown timeout.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, app, port: int = 0, graceful_s: float = 5.0):
        import uvicorn

        self.port = port
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=graceful_s, server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"uvicorn-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            time.sleep(0.01)
        if not self.port:  # bound to port 0: the kernel picked one
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run one fake backend in this process (prints ``PORT <n>`` when listening)."""
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m routerzoo.serving.testing", description="Run a fake OpenAI-compatible backend.")
    p.add_argument("--name", default="fake")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", default="ok", help="fault for every request (see the module docstring)")
    p.add_argument("--reply", default=None, metavar="TEXT",
                   help='answer text instead of "answer from NAME"; {letter} becomes A-J and {rating} 1-10 by a hash '
                        'of the model and prompt (e.g. "the answer is ({letter})", or "Rating: [[{rating}]]" for a judge)')
    args = p.parse_args(argv)
    backend = FakeBackend(args.name, reply=args.reply)
    backend.mode = args.mode
    config = uvicorn.Config(backend, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                            lifespan="on", server_header=False)
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                return await task
            await asyncio.sleep(0.01)
        print(f"PORT {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
