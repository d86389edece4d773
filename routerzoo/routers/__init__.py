"""Routers at inference time: artifact → predictions → decisions.

Importing this package is cheap: nothing here imports pandas, pyarrow, Lightning, MLflow or
matplotlib, and torch / transformers load only when a router that needs them predicts.
"""

from routerzoo.routers.core.base import Router
from routerzoo.routers.core.loader import load, load_router
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.registry import KINDS, get_kind

__all__ = ["KINDS", "Prediction", "Router", "get_kind", "load", "load_router"]
