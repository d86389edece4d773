"""Serving: what a production process needs to route requests with a registered router.

Kept light: nothing here imports Lightning or training code.
"""

from routerzoo.serving.loader import load_serving_router

__all__ = ["load_serving_router"]
