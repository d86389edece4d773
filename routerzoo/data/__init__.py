"""Canonical routing data: benchmark outcomes and preference pairs, importers, splits, prices.

Imports are lazy: ``routerzoo.data.matrix`` and ``routerzoo.data.tokens`` are usable without pulling
pandas into a process that only routes.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "RoutingDataset": "routerzoo.data.dataset",
    "load_dataset": "routerzoo.data.dataset",
    "save_dataset": "routerzoo.data.dataset",
    "OUTCOME_COLUMNS": "routerzoo.data.schema",
    "PREFERENCE_COLUMNS": "routerzoo.data.schema",
    "OutcomeMatrix": "routerzoo.data.matrix",
    "PreferenceMatrix": "routerzoo.data.matrix",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'routerzoo.data' has no attribute {name!r}")
