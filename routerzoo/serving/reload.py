"""Hot reload: follow ``models:/NAME@ALIAS`` in the registry and swap routers without dropping requests.

Every ``reload.poll_interval_s`` the watcher asks the registry which version the alias points at
(``MlflowClient.get_model_version_by_alias``, in a thread: MLflow's client is blocking). When it
moved, the new version is loaded by number (never by alias: the alias may move again during the
download), checked against the serve config, warmed with one prediction, and only then swapped in,
with one assignment, which is atomic for the event loop. Requests read the router once when they
start and keep that object, so those in flight finish on the old router; a failed load leaves the
old one serving.

:class:`PolicyWatcher` does the same for a sequential policy served in ``mode: cascade`` from
``cascade.policy: models:/NAME@ALIAS`` (a calibrated cascade or the MDP router): the new version is
loaded by number through the one loader, checked against the backends, warmed in the prediction
thread (``begin`` embeds the prompt for the MDP router; a learned scorer predicts once) and swapped
in with one assignment. A request reads the policy (and its scorer) once when it starts, so those
in flight finish on the version they started with.
"""

from __future__ import annotations

import asyncio
import logging

from routerzoo.errors import UserError
from routerzoo.serving.loader import AliasNotSet, LoadedRouter, alias_version, parse_alias_uri, prepare_router
from routerzoo.serving.worker import cancel_task, start_task

log = logging.getLogger("routerzoo.serving")


class RouterHolder:
    """The router being served now; read it once per request.

    Attributes:
        current: the :class:`LoadedRouter` in service, None until the first one is loaded.
    """

    def __init__(self, current: LoadedRouter | None = None):
        self.current = current
        self.on_swap = None

    def swap(self, new: LoadedRouter) -> LoadedRouter | None:
        """Put ``new`` in service; returns the previous router."""
        old, self.current = self.current, new
        if self.on_swap is not None:
            self.on_swap(new)
        return old


def share_encoder(new, old) -> None:
    """Give ``new`` the already loaded encoder of ``old`` when both use the same one.

    Saves loading the encoder's weights again (time, and memory for as long as requests on the
    old router run) and keeps the warm embedding cache. Safe because every prediction runs in the
    batcher's one worker thread.
    """
    encoder = getattr(old, "loaded_encoder", None)  # None until the old router first encoded
    if encoder is not None and getattr(new, "encoder", None) and new.encoder == old.encoder:
        new.set_encoder(encoder)


class AliasWatcher:
    """Polls the registry and swaps in new versions of an aliased router.

    Args:
        settings: the :class:`~routerzoo.serving.config.ServeConfig` (router source, interval,
            tracking URI, and what :func:`prepare_router` checks).
        holder: where the router in service lives.
        warm: ``async warm(router)``: one prediction on the new router before it takes traffic.
        metrics: a :class:`~routerzoo.serving.metrics.ServerMetrics` or None.
        before_swap: ``async before_swap(loaded)`` after warming, before the swap (the feedback
            learner moving to the new version), or None.
        source: the ``models:/NAME@ALIAS`` followed (default: ``settings.router``, the champion;
            the shadow and canary challengers name theirs, :mod:`routerzoo.serving.rollout`).
        role: what it follows, for the log ("router", "shadow", "canary").
    """

    role = "router"
    _last_error: str | None = None

    def __init__(self, settings, holder: RouterHolder, warm, metrics=None, before_swap=None, source: str | None = None,
                 role: str = "router"):
        self.source = settings.router if source is None else source
        alias = parse_alias_uri(self.source)
        if alias is None:
            raise ValueError(f"hot reload needs models:/NAME@ALIAS, got {self.source!r}")
        self.name, self.alias = alias
        self.role = role
        self.settings = settings
        self.holder = holder
        self.warm = warm
        self.metrics = metrics
        self.before_swap = before_swap
        self._task: asyncio.Task | None = None
        self._failed_version: str | None = None

    def serving(self) -> str:
        """What is in service now, for the log."""
        return self.holder.current.label if self.holder.current else "nothing"

    def start(self) -> None:
        self._task = start_task(self._loop(), "routerzoo-reload")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload.poll_interval_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop the watcher
                # the same failure every poll (an alias not made yet) is said once, then at debug level
                said = str(exc) == self._last_error
                self._last_error = str(exc)
                # a challenger's alias not set yet is expected (shadow / canary follow it until it is)
                expected = isinstance(exc, AliasNotSet) and self.role != "router"
                level = logging.DEBUG if said else logging.INFO if expected else logging.WARNING
                log.log(level, "hot reload of the %s models:/%s@%s failed, still serving %s: %s", self.role, self.name,
                        self.alias, self.serving(), exc)
                if self.metrics is not None:
                    self.metrics.reloads.labels("error").inc()
            else:
                self._last_error = None

    async def check(self) -> bool:
        """Poll once; load, warm and swap if the alias moved. Returns whether it swapped."""
        tracking_uri = self.settings.tracking_uri or None
        version = await asyncio.to_thread(alias_version, self.name, self.alias, tracking_uri)
        current = self.holder.current
        if (current is not None and current.version == version) or version == self._failed_version:
            return False  # unchanged, or a version that already failed to load: not every poll again
        from routerzoo.routers import load_router

        # a download can fail transiently (retried at the next poll); a version that does not fit
        # the config (candidates without backends, prices it cannot take) will not fit next time either
        router = await asyncio.to_thread(load_router, f"models:/{self.name}/{version}", tracking_uri=tracking_uri)
        try:
            loaded = prepare_router(router, self.settings, source=self.source, version=version)
        except UserError:
            self._failed_version = version
            raise
        if current is not None:
            share_encoder(loaded.router, current.router)
        await self.warm(loaded.router)
        if self.before_swap is not None:
            await self.before_swap(loaded)
        self.holder.swap(loaded)
        log.info("hot reload (%s): models:/%s@%s moved to version %s; now serving it (was %s)", self.role, self.name,
                 self.alias, version, current.version if current else "none")
        if self.metrics is not None:
            self.metrics.reloads.labels("swapped").inc()
        return True


class PolicyWatcher(AliasWatcher):
    """Polls the registry and swaps in new versions of an aliased sequential policy (``mode: cascade``).

    Args:
        cascade: the :class:`~routerzoo.serving.cascade.CascadeServer` whose ``policy`` is swapped
            (``cascade.config.policy`` is the ``models:/NAME@ALIAS`` followed).
        settings: the serve config (interval, tracking URI, backends).
        version: the version in service now ("" if unknown: the first poll then loads the alias's;
            default: ``cascade.version``, the one it loaded).
        metrics: a :class:`~routerzoo.serving.metrics.ServerMetrics` or None.
    """

    role = "policy"

    def __init__(self, cascade, settings, version: str | None = None, metrics=None):  # noqa: D107
        alias = parse_alias_uri(cascade.config.policy)
        if alias is None:
            raise ValueError(f"hot reload needs models:/NAME@ALIAS, got {cascade.config.policy!r}")
        self.name, self.alias = alias
        self.settings, self.metrics, self.cascade = settings, metrics, cascade
        self.version = getattr(cascade, "version", "") if version is None else version
        self._task: asyncio.Task | None = None
        self._failed_version: str | None = None

    def serving(self) -> str:
        return f"{self.name}@{self.version}" if self.version else "the policy loaded at start-up"

    async def check(self) -> bool:
        """Poll once; load, check, warm and swap if the alias moved. Returns whether it swapped."""
        from routerzoo.routers.core.loader import load

        tracking_uri = self.settings.tracking_uri or None
        version = await asyncio.to_thread(alias_version, self.name, self.alias, tracking_uri)
        if version == self.version or version == self._failed_version:
            return False
        policy = await asyncio.to_thread(load, f"models:/{self.name}/{version}", role="policy", tracking_uri=tracking_uri)
        try:
            self.cascade.check(policy, f"models:/{self.name}/{version}")
        except UserError:  # will not fit next time either: not retried every poll
            self._failed_version = version
            raise
        # loads the encoders before traffic, in the prediction thread where every later use runs
        await self.cascade.state.batcher.run_in_worker(self.cascade.warm, policy)
        old, self.cascade.policy = self.version, policy
        self.version = self.cascade.version = version
        log.info("hot reload: models:/%s@%s moved to version %s; now serving it (was %s)", self.name, self.alias,
                 version, old or "the start-up version")
        if self.metrics is not None:
            self.metrics.reloads.labels("swapped").inc()
        return True
