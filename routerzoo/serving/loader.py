"""Load a router for serving: the one loader, with the server's prices and backends applied.

``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/...`` or a local directory, through
:func:`routerzoo.routers.load_router` (nothing left on disk), optionally repriced. For the server,
:func:`load_for_serving` also pins an alias to the version it points at (so a reload compares
versions, and an alias moving during a download cannot mix two versions) and checks the router
against the serve config (:class:`LoadedRouter`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError
from routerzoo.routers import Router, load, load_router

log = logging.getLogger("routerzoo.serving")

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")


def load_serving_router(uri: str | os.PathLike, *, prices: dict | None = None, tracking_uri: str | None = None) -> Router:
    """A router ready to serve.

    Args:
        uri: registry or run URI of a model logged by routerzoo, or an artifact directory.
        prices: optional new price table (model → {"input", "output"} $ per 1M tokens).
        tracking_uri: MLflow tracking URI for registry URIs.
    """
    router = load_router(uri, tracking_uri=tracking_uri)
    return router.with_prices(prices, "serving prices") if prices else router


def parse_alias_uri(source: str) -> tuple[str, str] | None:
    """(name, alias) of ``models:/NAME@ALIAS``, else None."""
    m = _ALIAS_URI.match(str(source))
    return (m.group("name"), m.group("alias")) if m else None


class AliasNotSet(UserError):
    """``models:/NAME@ALIAS`` names a model or alias the registry does not have (yet)."""


def alias_version(name: str, alias: str, tracking_uri: str | None = None) -> str:
    """The registry version ``name@alias`` points at now.

    Raises:
        AliasNotSet: the alias or model does not exist.
        UserError: the registry cannot be reached or refuses.
    """
    from routerzoo.zoo.tracking import setup

    mlflow = setup(tracking_uri or None)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        # MLflow says INVALID_PARAMETER_VALUE for a missing alias, RESOURCE_DOES_NOT_EXIST for a missing model
        missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message
        raise (AliasNotSet if missing else UserError)(f"cannot resolve models:/{name}@{alias}: {exc.message}") from None
    return str(version.version)


@dataclass
class LoadedRouter:
    """A router checked against the serve config, with what the server derives from it.

    Attributes:
        router: the router (repriced with the serving prices and the backends' price overrides).
        source: what was asked for (artifact directory or ``models:/NAME@ALIAS``).
        name: registered model name, or the artifact directory's name.
        version: registry version ("" for an artifact directory).
        routable: candidates requests may be routed to, in the router's column order.
        mask: (m,) bool, True for routable candidates.
        prices: candidate → (input, output) USD per 1M tokens, for cost estimates from usage.
    """

    router: Router
    source: str
    name: str
    version: str
    routable: list[str]
    mask: np.ndarray
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name@version`` (or the name alone)."""
        return f"{self.name}@{self.version}" if self.version else self.name


def _price_file(path: str, models: list[str]) -> dict:
    from routerzoo.data.prices import load_price_file

    table = load_price_file(path)
    # a shared price file lists many models: keep the router's candidates
    return {m: p for m, p in table.items() if m in models}


def prepare_router(router: Router, settings, *, source: str = "", version: str = "") -> LoadedRouter:
    """Apply the serving prices and backend price overrides; check backends and profiles.

    Args:
        router: a loaded router.
        settings: the :class:`~routerzoo.serving.config.ServeConfig`.
        source: where it came from (for ``/ready`` and metrics).
        version: its registry version, if any.

    Raises:
        ConfigError: missing backends, bad profiles, or prices the router cannot use.
    """
    routable = settings.check_router(list(router.models))
    if settings.prices:
        table = _price_file(settings.prices, router.models)
        if table:
            router = router.with_prices(table, f"prices {settings.prices}")
    overrides = {m: {"input": b.prices.input, "output": b.prices.output}
                 for m, b in settings.backends.items() if b.prices is not None and m in router.models}
    for model, price in overrides.items():
        try:
            router = router.with_prices({model: price}, f"backends[{model!r}].prices")
        except UserError as exc:
            # still used for the cost estimates from usage; decisions keep the training costs
            log.warning("%s; routing decisions use %s's training costs, estimates use the new prices", exc, model)
    cm = router.cost_model
    table = dict(cm.current or cm.prices)
    prices = {m: (float(p["input"]), float(p["output"])) for m, p in table.items() if m in router.models}
    prices.update({m: (p["input"], p["output"]) for m, p in overrides.items()})
    alias = parse_alias_uri(source)
    if alias is not None:
        name = alias[0]
    elif source:
        name = Path(str(source)).resolve().name
    else:
        name = router.kind
    mask = np.array([m in routable for m in router.models], dtype=bool)
    return LoadedRouter(router, str(source), name, version, routable, mask, prices)


_NOT_ROUTERS = {
    "deferral": "a deferral scorer: serve it in a cascade (mode: cascade, cascade.scorer: {src})",
    "policy": "a sequential policy: serve it with mode: cascade and cascade.policy: {src}",
}


def _refuse_non_router(source) -> None:
    """A local artifact of another role (deferral scorer, MDP policy) named as the router: say what it is."""
    import json

    config = Path(str(source)) / "config.json"
    if not config.is_file():
        return
    try:
        doc = json.loads(config.read_text())
    except (OSError, ValueError):
        return  # the router loader reports it
    role = doc.get("role") if isinstance(doc, dict) else None
    if role in _NOT_ROUTERS:
        what = _NOT_ROUTERS[role].format(src=source)
        raise UserError(f"{source} is not a router (it is {what.split(':')[0]}, kind {doc.get('kind')!r}):"
                        f"{what.split(':', 1)[1]}")


def load_for_serving(source: str | os.PathLike, settings) -> LoadedRouter:
    """Load ``source`` (directory or registry URI) for the server described by ``settings``.

    ``models:/NAME@ALIAS`` is resolved to its version first and that version is loaded.
    """
    tracking_uri = settings.tracking_uri or None
    _refuse_non_router(source)
    alias = parse_alias_uri(str(source))
    version = ""
    target = source
    if alias is not None:
        version = alias_version(*alias, tracking_uri)
        target = f"models:/{alias[0]}/{version}"
    router = load(target, tracking_uri=tracking_uri)  # any role: one that is not a router is told where it goes
    if not isinstance(router, Router):
        from routerzoo.errors import ConfigError
        from routerzoo.routers.registry import get_kind

        role = get_kind(router.kind).role
        where = "cascade.policy" if role == "policy" else "cascade.scorer"
        raise ConfigError(f"{source} is a {role} artifact ({router.kind}), not a router: serve it with `mode: cascade` "
                          f"and `{where}: {source}` in --config")
    return prepare_router(router, settings, source=str(source), version=version)
