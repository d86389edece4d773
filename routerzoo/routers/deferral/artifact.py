"""Deferral scorers on disk, and built from a kind name: ``config.json`` + ``weights.safetensors``.

The format and its checks are those of every artifact (:mod:`routerzoo.routers.core.artifact`; loaded
through the one loader, :func:`routerzoo.routers.core.loader.load`)::

    schema_version  1
    role            "deferral"
    kind            registered deferral kind
    config          the kind's typed config
    lineage         dataset, split, models the scorer was fitted for, encoder fingerprint
    weights_sha256

A policy that reads a scorer (a calibrated cascade, the MDP router) embeds it in its own artifact
(:func:`scorer_section` / :func:`scorer_from_section`): its kind, config and lineage under
``scorer`` and its tensors prefixed ``scorer/`` in the policy's weights, covered by one hash.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError
from routerzoo.routers.core.artifact import ArtifactError, check_values, write_document
from routerzoo.routers.core.typed_config import config_from_dict, config_to_dict

DEFERRAL_SCHEMA_VERSION = 1
#: prefix of an embedded scorer's tensors in a policy's weights
SCORER_PREFIX = "scorer/"


def make_deferral(kind: str, config: dict | None = None, where: str = "scorer"):
    """An untrained deferral scorer of a registered kind with ``config`` checked against its dataclass."""
    from routerzoo.routers.registry import get_kind

    spec = get_kind(kind, role="deferral")
    cfg = config_from_dict(spec.load_config(), config or {}, f"{where}.config")
    return spec.load_class()(cfg)


def deferral_config(scorer, lineage: dict | None = None) -> dict:
    """``config.json`` content of ``scorer`` (without ``weights_sha256``)."""
    from routerzoo import __version__

    return {"schema_version": DEFERRAL_SCHEMA_VERSION, "role": "deferral", "kind": scorer.kind,
            "config": config_to_dict(scorer.config), "lineage": dict(lineage or getattr(scorer, "lineage", None) or {}),
            "routerzoo_version": __version__}


def save_deferral(scorer, path: str | os.PathLike, *, lineage: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``scorer`` to directory ``path`` all-or-nothing; returns the path."""
    return write_document(path, deferral_config(scorer, lineage), scorer.state(), overwrite=overwrite,
                          what="deferral scorer artifact")


def build_deferral(config: dict, tensors: dict[str, np.ndarray], where: str):
    """The scorer a checked ``config.json`` describes, with its weights loaded (the loader's deferral builder)."""
    try:
        scorer = make_deferral(config.get("kind"), config.get("config"), where=where)
    except UserError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    tensors = {k: v for k, v in tensors.items() if k != "empty"}
    check_values(tensors, f"{where}: weights")
    try:
        scorer.load_state(tensors)
    except ArtifactError:
        raise
    except (KeyError, ValueError, UserError) as exc:
        raise ArtifactError(f"{where}: weights: {exc}") from None
    scorer.lineage = config.get("lineage") or {}
    return scorer


def load_deferral(path: str | os.PathLike, *, tracking_uri: str | None = None):
    """Load a deferral scorer artifact (a folder or an MLflow URI; checked, never unpickled)."""
    from routerzoo.routers.core.loader import load

    return load(path, role="deferral", tracking_uri=tracking_uri)


def scorer_section(scorer) -> tuple[dict, dict[str, np.ndarray]]:
    """(``scorer`` section, prefixed tensors) embedding ``scorer`` in a policy's artifact."""
    section = {"kind": scorer.kind, "config": config_to_dict(scorer.config), "lineage": getattr(scorer, "lineage", None) or {}}
    return section, {SCORER_PREFIX + k: v for k, v in scorer.state().items()}


def scorer_from_section(section, tensors: dict[str, np.ndarray], where: str):
    """The scorer a policy artifact embeds (:func:`scorer_section`)."""
    if not isinstance(section, dict) or not isinstance(section.get("kind"), str):
        raise ArtifactError(f"{where}: field 'scorer' must be an object with the scorer's 'kind' and 'config'")
    own = {k[len(SCORER_PREFIX):]: v for k, v in tensors.items() if k.startswith(SCORER_PREFIX)}
    doc = {"kind": section["kind"], "config": section.get("config") or {}, "lineage": section.get("lineage") or {}}
    return build_deferral(doc, own, f"{where}: scorer")


def resolve_deferral(source: str, config: dict | None = None, *, tracking_uri: str | None = None):
    """A scorer from a registered kind name (with ``config``), an artifact directory or an MLflow URI."""
    from routerzoo.routers.core.loader import is_uri
    from routerzoo.routers.registry import KINDS

    spec = KINDS.get(source)
    if spec is not None and spec.role == "deferral":
        return make_deferral(source, config)
    if config:
        raise UserError(f"scorer_config applies to a deferral kind; {source!r} is not one (an artifact holds its own)")
    if not is_uri(source) and not Path(source).is_dir():
        from routerzoo.routers.registry import kinds

        raise UserError(f"scorer {source!r} is neither a deferral kind ({sorted(kinds('deferral'))}) nor a directory")
    return load_deferral(source, tracking_uri=tracking_uri)
