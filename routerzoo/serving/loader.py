"""Load a router for serving: the one loader, with the server's defaults.

``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/...`` or a local directory, through
:func:`routerzoo.routers.load_router` (nothing left on disk), optionally repriced.
"""

from __future__ import annotations

import os

from routerzoo.routers import Router, load_router


def load_serving_router(uri: str | os.PathLike, *, prices: dict | None = None, tracking_uri: str | None = None) -> Router:
    """A router ready to serve.

    Args:
        uri: registry or run URI of a model logged by routerzoo, or an artifact directory.
        prices: optional new price table (model → {"input", "output"} $ per 1M tokens).
        tracking_uri: MLflow tracking URI for registry URIs.
    """
    router = load_router(uri, tracking_uri=tracking_uri)
    return router.with_prices(prices, "serving prices") if prices else router
