"""Deferral scorers on disk, and built from a kind name: ``config.json`` + ``weights.safetensors``.

The layout matches router artifacts (nothing pickled; the weights' sha256 recorded in the config
and checked on load)::

    schema_version  1
    role            "deferral"
    kind            registered deferral kind
    config          the kind's typed config
    lineage         dataset, split, models the scorer was fitted for
    weights_sha256
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError
from routerzoo.routers.artifact import CONFIG_FILE, WEIGHTS_FILE, ArtifactError, read_weights, refuse_pickles
from routerzoo.routers.typed_config import config_from_dict, config_to_dict

DEFERRAL_SCHEMA_VERSION = 1


def make_deferral(kind: str, config: dict | None = None, where: str = "scorer"):
    """An untrained deferral scorer of a registered kind with ``config`` checked against its dataclass."""
    from routerzoo.routers.registry import get_kind

    spec = get_kind(kind, role="deferral")
    cfg = config_from_dict(spec.load_config(), config or {}, f"{where}.config")
    return spec.load_class()(cfg)


def save_deferral(scorer, path: str | os.PathLike, *, lineage: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``scorer`` to directory ``path`` all-or-nothing; returns the path."""
    from safetensors.numpy import save_file

    from routerzoo import __version__
    from routerzoo.data.fsutil import atomic_directory, file_sha256

    path = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in scorer.state().items()}
    if not tensors:  # safetensors needs one tensor; every artifact keeps the same two files
        tensors = {"unsupervised": np.zeros(1)}
    config = {"schema_version": DEFERRAL_SCHEMA_VERSION, "role": "deferral", "kind": scorer.kind,
              "config": config_to_dict(scorer.config), "lineage": lineage or {}, "routerzoo_version": __version__}
    with atomic_directory(path, overwrite=overwrite, what="deferral scorer artifact") as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"kind": scorer.kind})
        config["weights_sha256"] = file_sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_deferral(path: str | os.PathLike):
    """Load a deferral scorer artifact (checked, never unpickled)."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not path.is_dir() or not cfg_path.is_file():
        raise ArtifactError(f"{path}: not a deferral scorer artifact (no {CONFIG_FILE})")
    refuse_pickles(path)
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{cfg_path}: cannot read ({exc})") from None
    if not isinstance(config, dict) or config.get("role") != "deferral":
        raise ArtifactError(f"{cfg_path}: field 'role' must be \"deferral\" (is this a router artifact?)")
    version = config.get("schema_version")
    if not isinstance(version, int) or version > DEFERRAL_SCHEMA_VERSION:
        raise ArtifactError(f"{cfg_path}: schema version {version!r} is newer than this routerzoo reads "
                            f"({DEFERRAL_SCHEMA_VERSION}); upgrade routerzoo")
    try:
        scorer = make_deferral(config.get("kind"), config.get("config"), where=str(cfg_path))
    except UserError as exc:
        raise ArtifactError(f"{cfg_path}: {exc}") from None
    tensors = read_weights(path, config.get("weights_sha256"))
    try:
        scorer.load_state(tensors)
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: {exc}") from None
    scorer.lineage = config.get("lineage") or {}
    return scorer


def resolve_deferral(source: str, config: dict | None = None):
    """A scorer from a registered kind name (with ``config``) or an artifact directory."""
    from routerzoo.routers.registry import KINDS

    spec = KINDS.get(source)
    if spec is not None and spec.role == "deferral":
        return make_deferral(source, config)
    if config:
        raise UserError(f"scorer_config applies to a deferral kind; {source!r} is not one (an artifact holds its own)")
    if not Path(source).is_dir():
        from routerzoo.routers.registry import kinds

        raise UserError(f"scorer {source!r} is neither a deferral kind ({sorted(kinds('deferral'))}) nor a directory")
    return load_deferral(source)
