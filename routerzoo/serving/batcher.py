"""Micro-batching of router inference across concurrent requests.

Encoding one prompt costs nearly as much as encoding dozens (the transformer's fixed overhead
dominates on CPU), so the server queues the prompts of concurrent requests and runs
``router.predict`` on them together, in one worker thread so the event loop keeps serving I/O while
the encoder runs.

When a batch is formed: at once when ``max_batch`` prompts are waiting or when every request that
has been admitted but has not yet asked for a prediction is already in the queue (waiting longer
could only add latency, nobody else is coming); otherwise after at most ``max_wait_s``. Under load
batches form by themselves: the prompts that arrive while one batch is encoded make up the next.

One worker thread, not a pool: the encoder already uses every core through torch's intra-op
threads, and two batches encoding at once would only contend. A failing batch is retried prompt
by prompt, so a prompt the router cannot take fails its own request only; the loop goes on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from routerzoo.serving.worker import cancel_task, start_task

log = logging.getLogger("routerzoo.serving")


class Arrival:
    """A request announced to the batcher before its body is parsed (see :meth:`MicroBatcher.arrival`).

    While announced and not yet queued it keeps the batcher waiting (up to ``max_wait_s``) for its
    prompt; :meth:`release` (idempotent) withdraws it, e.g. when the request turns out invalid.
    """

    __slots__ = ("_batcher", "_live")

    def __init__(self, batcher: MicroBatcher):
        self._batcher = batcher
        self._live = True
        batcher._expected += 1

    def release(self) -> None:
        if self._live:
            self._live = False
            self._batcher._expected -= 1

    def __enter__(self) -> Arrival:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class MicroBatcher:
    """Collects prompts from concurrent requests and predicts them in batches off the event loop.

    Args:
        max_wait_s: longest a prompt waits for others to join its batch, seconds.
        max_batch: most prompts per ``router.predict`` call.
        on_batch: called as ``on_batch(size, seconds)`` after each batch (metrics); must not raise.
    """

    def __init__(self, max_wait_s: float = 0.002, max_batch: int = 64,
                 on_batch: Callable[[int, float], None] | None = None):
        self.max_wait_s = float(max_wait_s)
        self.max_batch = int(max_batch)
        self.on_batch = on_batch
        self._pending: collections.deque = collections.deque()
        self._expected = 0  # announced requests not yet queued
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="routerzoo-predict")
        self._task = start_task(self._loop(), "routerzoo-batcher")

    async def stop(self) -> None:
        """Stop the loop; requests still queued fail with a RuntimeError."""
        await cancel_task(self._task)
        self._task = None
        while self._pending:
            _, _, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def run_in_worker(self, fn, *args):
        """Run ``fn(*args)`` in the prediction thread (warm-up, loading a router's encoder)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- requests --------------------------------------------------------------------------------
    def arrival(self) -> Arrival:
        """Announce a request that will ask for a prediction soon (use as a context manager)."""
        return Arrival(self)

    async def predict(self, router, prompt: str, arrival: Arrival | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (quality (m,), cost (m,)) of ``router`` for one prompt, computed in a batch.

        Requests carry the router they started with: a batch is split by router, so after a hot
        reload requests already queued still finish on the old one.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((router, prompt, fut))
        if arrival is not None:
            arrival.release()
        self._wakeup.set()
        return await fut

    # -- the loop --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                if not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._gather()
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), self.max_batch))]
                await self._run(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive any bad batch
                log.exception("micro-batcher: unexpected error (the loop continues)")

    async def _gather(self) -> None:
        """Wait (bounded) for announced requests to queue their prompts."""
        if self.max_wait_s <= 0:
            return
        deadline = time.monotonic() + self.max_wait_s
        while len(self._pending) < self.max_batch and self._expected > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    async def _run(self, batch: list) -> None:
        groups: dict[int, list] = {}
        for item in batch:
            if not item[2].cancelled():
                groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            await self._predict_group(items)

    async def _predict_group(self, items: list) -> None:
        """Predict one router's prompts together; if that fails, in halves down to single prompts, so
        one prompt the router cannot take fails its own request and no other."""
        router = items[0][0]
        t0 = time.perf_counter()
        try:
            quality, cost = await self._predict(router, [p for _, p, _ in items])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - delivered to the request(s) it belongs to
            if len(items) == 1:
                if not items[0][2].done():
                    items[0][2].set_exception(exc)
                return
            # halves, not one by one: one bad prompt among n costs about 2·log2(n) predictions
            log.warning("micro-batcher: a batch of %d failed (%s); splitting it to find the prompt(s) at fault",
                        len(items), type(exc).__name__)
            half = len(items) // 2
            for part in (items[:half], items[half:]):
                live = [item for item in part if not item[2].done()]
                if live:
                    await self._predict_group(live)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - t0)
        for i, (_, _, fut) in enumerate(items):
            if not fut.done():
                fut.set_result((quality[i], cost[i]))

    async def _predict(self, router, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        pred = await asyncio.get_running_loop().run_in_executor(self._executor, router.predict, prompts)
        quality = np.asarray(pred.quality, dtype=np.float64)
        cost = np.asarray(pred.cost, dtype=np.float64)
        if quality.shape[0] != len(prompts):
            raise RuntimeError(f"router returned {quality.shape[0]} predictions for {len(prompts)} prompts")
        return quality, cost
