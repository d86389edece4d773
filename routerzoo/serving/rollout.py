"""A challenger router beside the champion: shadow decisions and a canary share of traffic.

``shadow: models:/NAME@challenger`` (or an artifact directory) loads a second router. For every
routed request the challenger's decision is computed *off the hot path*, without calling any
backend: the request's routing text goes into a bounded queue (full: dropped and counted), and a
thread of its own predicts queued texts in batches (when the challenger uses the champion's encoder,
that encoder is shared, so its memory cache usually answers: the champion has just encoded the same
text). Each decision is written to the request log's ``shadow`` table (request id, the challenger's
``name@version``, its choice, its scores) and counted in ``routerzoo_shadow_decisions_total{version,
agree}`` (agreement with the champion's choice).

``canary: {version: models:/NAME@challenger, share: 0.1}`` routes a stable share of requests with
the challenger instead of the champion: a request goes to the canary when the sha256 of its
``user`` field (the OpenAI end-user id; else its routing text) falls in the first ``share`` of the
hash space, so one user (or one prompt) always gets the same router. The response names the
router that routed it (``x-routerzoo-router: name@version``), and so do the request log and the
per-version metrics.

Both are loaded at start-up after the champion; a challenger that fails to load is logged and left
off (the champion keeps serving). Named as ``models:/NAME@ALIAS``, each follows its alias while the
server runs, like the champion: the same :class:`~routerzoo.serving.reload.AliasWatcher` (every
``reload.poll_interval_s``) loads the new version by number, warms it and swaps it in, and a
challenger that could not be loaded at start-up comes in once its alias points at a version that
loads. A request reads the challenger once, so it finishes on the one it started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from routerzoo.errors import ConfigError
from routerzoo.serving.loader import AliasNotSet, alias_version, parse_alias_uri
from routerzoo.serving.reload import AliasWatcher, RouterHolder

log = logging.getLogger("routerzoo.serving.rollout")


@dataclass
class CanaryConfig:
    """The ``canary`` section: a share of traffic routed by a challenger.

    Attributes:
        version: the challenger router: ``models:/NAME@ALIAS`` or an artifact directory.
        share: fraction of requests in (0, 1] it routes, chosen by a stable hash.
    """

    version: str = ""
    share: float = 0.1

    def __post_init__(self):
        if not self.version:
            raise ConfigError("canary.version must name the challenger router (models:/NAME@ALIAS or a directory)")
        if not (math.isfinite(self.share) and 0 < self.share <= 1):
            raise ConfigError(f"canary.share must be in (0, 1], got {self.share}")


def in_canary(key: str, share: float) -> bool:
    """Whether ``key`` falls in the first ``share`` of the sha256 hash space (stable across processes)."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return h < share * 2.0**64


class Rollout:
    """The challenger routers of one app.

    Args:
        state: the app's :class:`~routerzoo.serving.app.ServerState` (settings, metrics, request log).
        queue_size: most texts waiting for the shadow router; more are dropped and counted.
        max_batch: most texts per shadow prediction.
    """

    def __init__(self, state, queue_size: int = 4096, max_batch: int = 64):
        self.state = state
        self.queue_size = queue_size
        self.max_batch = max_batch
        self._shadow = RouterHolder()  # holders, so the alias watchers swap them as they swap the champion
        self._canary = RouterHolder()
        self.watchers: list[AliasWatcher] = []
        self.dropped = 0
        self._queue: deque = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._metric = None
        self._champion = None

    @property
    def shadow(self):
        """The shadow challenger in service (a :class:`~routerzoo.serving.loader.LoadedRouter`), or None."""
        return self._shadow.current

    @property
    def canary(self):
        """The canary challenger in service, or None."""
        return self._canary.current

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, champion) -> None:
        """Load the configured challengers (sharing the champion's encoder where it is the same)."""
        s = self.state.settings
        self._champion = champion
        if s.shadow:
            loaded = await self._load(s.shadow, "shadow")
            if loaded is not None:
                self._shadow.swap(loaded)
            from prometheus_client import Counter

            # also without a shadow loaded yet: an alias watcher may bring one in later
            self._metric = Counter("routerzoo_shadow_decisions", "Shadow decisions of a challenger, by its "
                                   "version and whether it agreed with the champion", ["version", "agree"],
                                   registry=self.state.metrics.registry)
            self._thread = threading.Thread(target=self._run, name="routerzoo-shadow", daemon=True)
            self._thread.start()
        if s.canary is not None:
            loaded = await self._load(s.canary.version, "canary")
            if loaded is not None:
                self._canary.swap(loaded)
        self._watch()

    def _watch(self) -> None:
        """Follow ``models:/NAME@ALIAS`` challengers with the champion's kind of watcher."""
        s = self.state.settings
        if s.reload.poll_interval_s <= 0:
            return
        for role, source, holder in (("shadow", s.shadow, self._shadow),
                                     ("canary", s.canary.version if s.canary is not None else "", self._canary)):
            if source and parse_alias_uri(source) is not None:
                watcher = AliasWatcher(s, holder, self._warm, self.state.metrics, source=source, role=role)
                watcher.start()
                self.watchers.append(watcher)

    async def _warm(self, router) -> None:
        """Share the champion's encoder when it is the same one (one in memory, and its cache answers), then warm."""
        champion = self.state.holder.current or self._champion
        enc = getattr(champion.router, "loaded_encoder", None) if champion is not None else None
        if enc is not None and getattr(router, "encoder", None) == enc.model_id:
            router.set_encoder(enc)
        await self.state.warm(router)

    async def _load(self, source: str, role: str):
        from routerzoo.serving.loader import load_for_serving

        alias = parse_alias_uri(source)
        try:
            if alias is not None:  # a challenger's alias not set yet is the normal start of a rollout
                await asyncio.to_thread(alias_version, *alias, self.state.settings.tracking_uri or None)
            loaded = await asyncio.to_thread(load_for_serving, source, self.state.settings)
        except AliasNotSet:
            follows = "it comes in when the alias is set" if self.state.settings.reload.poll_interval_s > 0 else (
                "reload.poll_interval_s is 0, so it is not followed")
            log.info("%s: %s has no version yet; %s", role, source, follows)
            return None
            await self._warm(loaded.router)
        except Exception as exc:  # noqa: BLE001 - the champion keeps serving without it
            log.error("%s: could not load %s (%s: %s); serving without it", role, source, type(exc).__name__, exc)
            return None
        log.info("%s: %s loaded (%s router)", role, loaded.label, loaded.router.kind)
        return loaded

    async def stop_watchers(self) -> None:
        for watcher in self.watchers:
            await watcher.stop()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(10)

    # -- request path ------------------------------------------------------------------------------
    def pick(self, champion, payload: dict, text: str):
        """The router for this request: the canary for its hash share, else the champion."""
        canary = self.canary
        if canary is None or champion is None:
            return champion
        user = payload.get("user")
        key = user if isinstance(user, str) and user else text
        return canary if in_canary(key, self.state.settings.canary.share) else champion

    def observe(self, rid: str, loaded, text: str, chosen: str) -> None:
        """Queue the shadow's decision on a request the champion routed (never blocks; full: dropped)."""
        if self.shadow is None or loaded is self.canary:
            return
        with self._cv:
            if len(self._queue) >= self.queue_size or self._stopping:
                self.dropped += 1
                return
            self._queue.append((rid, text, chosen))
            self._cv.notify()

    # -- the shadow thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:  # stopping, and everything queued was decided
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            try:
                self._decide(batch)
            except Exception:  # noqa: BLE001 - a shadow never harms serving
                log.exception("shadow: %d decision(s) failed", len(batch))

    def _decide(self, batch: list) -> None:
        import numpy as np

        from routerzoo.serving.app import preference_order

        loaded = self.shadow  # read once: an alias move swaps it between batches
        if loaded is None:  # not loaded (yet): nothing to compare
            return
        router = loaded.router
        pred = router.predict([t for _, t, _ in batch])
        quality, cost = np.asarray(pred.quality, dtype=np.float64), np.asarray(pred.cost, dtype=np.float64)
        traffic = self.state.traffic
        for i, (rid, _, champion_choice) in enumerate(batch):
            choice = preference_order(loaded, router.policy, quality[i], cost[i])[0]
            self._metric.labels(loaded.label, str(choice == champion_choice).lower()).inc()
            if traffic is not None:
                traffic.log.log_shadow({"request_id": rid, "time": time.time(), "router": loaded.label,
                                        "chosen": choice, "agree": int(choice == champion_choice),
                                        "scores": {m: float(v) for m, v in zip(router.models, quality[i], strict=True)}})

