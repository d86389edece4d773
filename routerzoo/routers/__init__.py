"""Routers at inference time: artifact → scores → decisions.

Nothing here imports Lightning or training code, so a server can load a router cheaply.
"""

from routerzoo.routers.base import Prediction, Router
from routerzoo.routers.registry import ROUTERS, get_router_class, load_router

__all__ = ["ROUTERS", "Prediction", "Router", "get_router_class", "load_router"]
