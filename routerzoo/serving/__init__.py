"""Serving: what a production process needs to route requests with a registered router.

Kept light: nothing here imports Lightning, training code, pandas or matplotlib. Routers load
through the one loader, :func:`routerzoo.routers.load_router`.
"""

from routerzoo.serving.loader import load_serving_router

__all__ = ["load_serving_router"]
