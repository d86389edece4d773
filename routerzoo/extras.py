"""Optional dependency groups, and the one clear error when one is missing.

routerzoo's core installs what routing and data import need. Training (Lightning, jsonargparse,
MLflow), serving from a registry (MLflow) and plots (matplotlib) are extras:
``pip install 'routerzoo[train]'``, ``[serve]``, ``[plot]``; ``[dev]`` pulls everything.
"""

from __future__ import annotations

import importlib

from routerzoo.errors import UserError

#: top-level package → the extra that installs it
EXTRA_OF = {
    "lightning": "train",
    "jsonargparse": "train",
    "mlflow": "train",
    "matplotlib": "plot",
}


class MissingExtraError(UserError):
    """An optional dependency is not installed; the message names the pip command."""


def missing_extra(exc: ModuleNotFoundError, what: str) -> MissingExtraError:
    """A clear error for an ImportError of an optional package (re-raise others unchanged)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        raise exc
    return MissingExtraError(f"{what} needs the {top!r} package: pip install 'routerzoo[{extra}]'")


def require(module: str, what: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, what) from None
