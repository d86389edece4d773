"""``POST /v1/feedback``: rewards from clients teach an online-learning router (the ``linucb`` bandit).

Enabled by the serve config's ``feedback`` section (:class:`~routerzoo.serving.feedback_config.FeedbackConfig`).
Flow:

1. every routed request that a backend answered is remembered (request id → routing text and the
   model that answered; the most recent ``max_tracked``) in memory;
2. ``POST /v1/feedback`` with ``{"request_id": "...", "reward": 0.8}`` (the id from the
   ``x-routerzoo-request-id`` header; the reward on the router's quality scale) is checked (400
   naming the field, 404 for an unknown id, 409 for a second reward of the same request), then
   appended to ``feedback.jsonl`` and synced to disk *before* the 200 reply: an accepted reward is
   durable;
3. pending rewards are learnt in batches (``router.update(prompts, models, rewards)``, in the
   prediction thread, so never during a prediction) once ``flush_every`` are pending or every
   ``flush_interval_s``; the router's state is then written atomically to ``state.safetensors``
   (with the last learnt sequence number in its metadata) and only then is the log emptied;
4. on start-up the state is restored into the served router and every log entry newer than it is
   learnt again. A crash at any point loses no accepted reward and learns none twice.

The request id → text map is memory only: feedback for a request routed before a restart gets 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from routerzoo.data.fsutil import atomic_write_bytes
from routerzoo.routers.encoders.encoder import truncate_chars
from routerzoo.serving.app import RequestError, decode_body
from routerzoo.serving.feedback_config import FeedbackConfig
from routerzoo.serving.worker import cancel_task, start_task

log = logging.getLogger("routerzoo.serving.feedback")

# longest encoder window served (tokens): texts are kept up to what such an encoder reads
_MAX_TOKENS = 512


def _entry_bytes(text: str) -> int:
    return sys.getsizeof(text) + 200  # the string, plus the id, list and dict slot around it


LOG_FILE = "feedback.jsonl"
STATE_FILE = "state.safetensors"


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data, durable=True)  # learnt state and its log survive a power cut


class FeedbackLearner:
    """The feedback endpoint's state for one app.

    Args:
        config: the ``feedback`` section.
        state: the app's :class:`~routerzoo.serving.app.ServerState` (for its batcher and body limits).
    """

    def __init__(self, config: FeedbackConfig, state):
        self.config = config
        self.state = state
        self.dir = Path(config.state_dir)
        self.router = None
        self.label = ""  # name@version of the router learning
        self._routed: OrderedDict[str, list] = OrderedDict()  # id → [text, model, rewarded]
        self.tracked_bytes = 0  # the texts in ``_routed``, roughly (str size in memory)
        self._pending: list[dict] = []
        self._seq = 0
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    async def attach(self, loaded) -> None:
        """Restore the learnt state into ``loaded.router``, learn the log's newer entries, start flushing.

        Called at start-up and on every hot reload, before the new version takes traffic: the
        rewards still pending are learnt into the version that routed them (and saved), then the
        learner follows the new version. Saved state belongs to one version (``name@version``): it
        is restored only into that version; another version starts from its trained state and the
        old files are kept beside it (``state-NAME@VERSION.safetensors``).
        """
        router = loaded.router
        if self._task is not None:  # a hot reload: finish the old version first
            await self.stop()
            self._task = None
        if not (callable(getattr(router, "update", None)) and hasattr(router, "state")):
            self.router = None
            log.warning("feedback: the %r router does not learn online; POST /v1/feedback will refuse", router.kind)
            return
        if self._lock is None:
            self._lock, self._wake = asyncio.Lock(), asyncio.Event()
        self.dir.mkdir(parents=True, exist_ok=True)
        applied = await self.state.batcher.run_in_worker(self._restore, router, loaded.label)
        entries = [e for e in self._read_log() if e["seq"] > applied]
        self._seq = max([applied, *(e["seq"] for e in entries)]) + 1
        self.label = loaded.label
        self.router = router
        if entries:
            log.info("feedback: learning %d reward(s) logged after the last saved state", len(entries))
            self._pending = entries
            await self.flush()
        self._task = start_task(self._loop(), "routerzoo-feedback")

    async def stop(self) -> None:
        await cancel_task(self._task)
        if self.router is not None and self._pending:
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the log still holds them: the next start learns them
                log.exception("feedback: could not learn pending rewards at shutdown")

    def _restore(self, router, label: str) -> int:
        """Load ``state.safetensors`` into ``router`` if it is this version's; the last sequence
        number it includes (0: none, or another version's, which is moved aside with its log)."""
        path = self.dir / STATE_FILE
        if not path.exists():
            return 0
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        owner = meta.get("version")
        if owner is not None and owner != label:
            tag = re.sub(r"[^A-Za-z0-9@._-]+", "_", owner)[:100]
            os.replace(path, self.dir / f"state-{tag}.safetensors")
            if (self.dir / LOG_FILE).exists():
                os.replace(self.dir / LOG_FILE, self.dir / f"feedback-{tag}.jsonl")
            log.warning("feedback: %s holds what %s learnt; %s starts from its trained state (the old state is "
                        "kept as state-%s.safetensors)", path, owner, label, tag)
            return 0
        if meta.get("models") != json.dumps(router.models) or meta.get("kind") != router.kind:
            raise RuntimeError(f"feedback: {path} holds a {meta.get('kind')} router over {meta.get('models')}, "
                               f"not this {router.kind} router over {router.models}; move it away to start afresh")
        router.load_state(load_file(str(path)))
        return int(meta.get("seq", 0))

    def _read_log(self) -> list[dict]:
        path = self.dir / LOG_FILE
        if not path.exists():
            return []
        entries = []
        for i, line in enumerate(path.read_text().splitlines()):
            try:
                entries.append(json.loads(line))
            except ValueError:
                # only the last line can be torn (a crash mid-append, before its reply): skip it
                log.warning("feedback: %s line %d is incomplete; skipped", path, i + 1)
        return entries

    # -- requests --------------------------------------------------------------------------------
    def record(self, rid: str, text: str, model: str) -> None:
        """Remember a routed request answered by ``model`` (called by the app).

        Only the prefix an encoder reads is kept, and the oldest entries go once the texts pass
        ``max_tracked_bytes``: ten unrewarded 1 MB prompts used to pin 10 MB.
        """
        if self.router is None:
            return
        text = truncate_chars([text], _MAX_TOKENS)[0]
        size = _entry_bytes(text)
        old = self._routed.pop(rid, None)
        if old is not None:
            self.tracked_bytes -= _entry_bytes(old[0])
        self._routed[rid] = [text, model, False]
        self.tracked_bytes += size
        while len(self._routed) > self.config.max_tracked or (
                self.tracked_bytes > self.config.max_tracked_bytes and len(self._routed) > 1):
            _, (gone, _, _) = self._routed.popitem(last=False)
            self.tracked_bytes -= _entry_bytes(gone)

    async def handle(self, request: Request) -> JSONResponse:
        """``POST /v1/feedback``."""
        payload = decode_body(await self.state.read_body(request))  # a hostile body is 400 whatever the router
        if self.router is None:
            raise RequestError(400, "the served router does not learn from feedback (serve a 'linucb' router with a "
                                    "feedback section)", code="feedback_unsupported")
        if not isinstance(payload, dict):
            raise RequestError(400, "the request body must be a JSON object with request_id and reward")
        rid, reward = payload.get("request_id"), payload.get("reward")
        if not isinstance(rid, str) or not rid:
            raise RequestError(400, "request_id must be the x-routerzoo-request-id of a routed request", param="request_id")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise RequestError(400, "reward must be a finite number", param="reward")
        lo, hi = self.router.quality_range
        if not lo <= reward <= hi:
            raise RequestError(400, f"reward must be on the router's quality scale [{lo:g}, {hi:g}], got {reward}", param="reward")
        seen = self._routed.get(rid)
        if seen is None:
            raise RequestError(404, f"no routed request {rid!r} is remembered (unknown, not routed, or too old)",
                               param="request_id", code="unknown_request_id")
        if seen[2]:
            raise RequestError(409, f"request {rid!r} already has a reward", param="request_id", code="duplicate_feedback")
        seen[2] = True  # before any await: a concurrent duplicate sees it
        entry = {"seq": 0, "request_id": rid, "model": seen[1], "reward": float(reward), "text": seen[0]}
        try:
            async with self._lock:
                entry["seq"] = self._seq
                await asyncio.to_thread(self._append, entry)
                self._seq += 1
                self._pending.append(entry)
        except BaseException:
            seen[2] = False
            raise
        if len(self._pending) >= self.config.flush_every:
            self._wake.set()
        return JSONResponse({"status": "accepted", "request_id": rid, "model": seen[1], "pending": len(self._pending)})

    def _append(self, entry: dict) -> None:
        with open(self.dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())  # durable before the client hears "accepted"

    # -- learning --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep serving; the log keeps the rewards for a retry
                log.exception("feedback: learning a batch failed; it stays pending")

    async def flush(self) -> int:
        """Learn every pending reward, save the state, empty the log; the number learnt."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                await self.state.batcher.run_in_worker(self._learn_and_save, batch)
            except BaseException:
                self._pending = batch + self._pending
                raise
            # the state now includes every logged entry (appends wait for the lock): empty the log
            await asyncio.to_thread(_write_atomic, self.dir / LOG_FILE, b"")
        log.info("feedback: learnt %d reward(s)", len(batch))
        return len(batch)

    def _learn_and_save(self, batch: list[dict]) -> None:
        from safetensors.numpy import save

        router = self.router
        router.update([e["text"] for e in batch], [e["model"] for e in batch], [e["reward"] for e in batch])
        meta = {"seq": str(batch[-1]["seq"]), "kind": router.kind, "models": json.dumps(router.models),
                "version": self.label}
        tensors = {k: np.ascontiguousarray(v) for k, v in router.state().items()}
        _write_atomic(self.dir / STATE_FILE, save(tensors, metadata=meta))
