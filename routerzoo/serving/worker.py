"""The background tasks of the server (the micro-batcher, the feedback learner, the alias watcher):
one named asyncio task each, started on the running loop and cancelled at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


def start_task(loop_coro: Coroutine, name: str) -> asyncio.Task:
    """Run ``loop_coro`` as a task on the running event loop (call from inside it)."""
    return asyncio.get_running_loop().create_task(loop_coro, name=name)


async def cancel_task(task: asyncio.Task | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it has stopped.

    The task's own cancellation is swallowed; any other exception it ended with propagates, so a
    loop that died of a bug is not hidden at shutdown.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
