"""Router artifacts on disk: ``config.json`` + ``weights.safetensors``, nothing pickled.

``config.json`` (schema version 2)::

    schema_version  2
    kind            registered router kind ("knn", "mlp", ...)
    models          candidate model names: the column order of every array
    config          the kind's typed config (hyper-parameters), as the dataclass has it
    encoder         sentence-transformers id or folder, or null
    cost_model      mean cost and token counts per model, training prices
    policy          the default decision policy {"kind", "config"}
    quality_range   [low, high] of the predicted quality scale
    lineage         dataset name and sha256, split, MLflow run, ...
    weights_sha256  sha256 of weights.safetensors: a file swapped or edited after saving is refused
    routerzoo_version

Loading checks every field against the kind's typed config and the weights' names and shapes, and
names the artifact and the field in one error. Schema version 1 artifacts (routerzoo 0.1) are
upgraded on load (:func:`upgrade_v1`). Writing goes through a temporary folder renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from routerzoo.data.fsutil import file_sha256
from routerzoo.errors import UserError
from routerzoo.routers.cost import CostModel
from routerzoo.routers.typed_config import config_from_dict, config_to_dict

ARTIFACT_SCHEMA_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
#: files that may carry pickled Python objects; an artifact containing one is refused unopened
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class ArtifactError(UserError):
    """A router artifact that cannot be loaded as it is; the message names the file and field."""


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def artifact_config(router) -> dict:
    """``config.json`` content for ``router`` (without ``weights_sha256``)."""
    from routerzoo import __version__

    return {
        "schema_version": ARTIFACT_SCHEMA_VERSION,
        "kind": router.kind,
        "models": list(router.models),
        "config": config_to_dict(router.config),
        "encoder": router.encoder,
        "cost_model": router.cost_model.to_dict(),
        "policy": router.policy.to_dict(),
        "quality_range": list(router.quality_range),
        "lineage": router.lineage,
        "routerzoo_version": __version__,
    }


def write_artifact(router, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``router`` to directory ``path`` all-or-nothing; returns the path."""
    from safetensors.numpy import save_file

    from routerzoo.data.fsutil import atomic_directory

    path = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in router.state().items()}
    if not tensors:  # safetensors needs at least one tensor; keep the file so every artifact looks alike
        tensors = {"mean_cost": np.ascontiguousarray(np.nan_to_num(router.cost_model.mean_cost))}
    config = artifact_config(router)
    with atomic_directory(path, overwrite=overwrite, what="router artifact") as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"kind": router.kind})
        config["weights_sha256"] = file_sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default) + "\n")
    return path


def refuse_pickles(path: Path) -> None:
    """Refuse a folder holding a pickled file (by suffix, or pickle bytes under any other name but the
    safetensors weights): shared by every artifact loader (routers, deferral scorers, MDP policies)."""
    for p in sorted(path.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise ArtifactError(f"{p}: router artifacts never contain pickled files; refusing to load {path}")
        if p.name != WEIGHTS_FILE:
            with open(p, "rb") as f:
                if f.read(2) in _PICKLE_MAGIC:
                    raise ArtifactError(f"{p}: looks like a Python pickle; router artifacts never contain one")


def upgrade_v1(config: dict, where: str) -> dict:
    """A schema-1 ``config.json`` (routerzoo 0.1: ``params``, ``model_costs``, ``prices``) as schema 2."""
    for key in ("models", "model_costs"):
        if key not in config:
            raise ArtifactError(f"{where}: missing field '{key}' (schema version 1)")
    prices = config.get("prices") or {}
    prices = {m: p for m, p in prices.items() if isinstance(p, dict) and p.get("input") is not None and p.get("output") is not None}
    return {
        "schema_version": ARTIFACT_SCHEMA_VERSION,
        "kind": config.get("kind"),
        "models": config["models"],
        "config": dict(config.get("params") or {}),
        "encoder": config.get("encoder"),
        "cost_model": {"mean_cost": config["model_costs"], "prices": prices},
        "policy": {"kind": "argmax", "config": {"cost_weight": 0.0}},
        "quality_range": [0.0, 1.0],
        "lineage": dict(config.get("lineage") or {}, upgraded_from_schema=1),
    }


def read_config(path: str | os.PathLike) -> dict:
    """Read, check and (if old) upgrade ``config.json`` of artifact directory ``path``."""
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ArtifactError(f"{path} is not a router artifact: {CONFIG_FILE} not found (train one with `routerzoo train`)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{cfg_path}: expected a JSON object, got {type(config).__name__}")
    version = config.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ArtifactError(f"{cfg_path}: field 'schema_version' must be an integer, got {version!r}")
    if version > ARTIFACT_SCHEMA_VERSION:
        raise ArtifactError(f"{cfg_path}: artifact schema version {version} is newer than this routerzoo supports "
                            f"({ARTIFACT_SCHEMA_VERSION}); upgrade routerzoo")
    if version < 1:
        raise ArtifactError(f"{cfg_path}: unknown artifact schema version {version}")
    if version == 1:
        config = upgrade_v1(config, str(cfg_path))
    for key in ("kind", "models", "config", "cost_model", "policy"):
        if key not in config:
            raise ArtifactError(f"{cfg_path}: missing field '{key}'")
    models = config["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ArtifactError(f"{cfg_path}: field 'models' must be a non-empty list of model names, got {models!r}")
    if len(set(models)) != len(models):
        raise ArtifactError(f"{cfg_path}: field 'models' names a model twice: {models}")
    if not isinstance(config["kind"], str):
        raise ArtifactError(f"{cfg_path}: field 'kind' must be a string, got {config['kind']!r}")
    encoder = config.get("encoder")
    if encoder is not None and not isinstance(encoder, str):
        raise ArtifactError(f"{cfg_path}: field 'encoder' must be a string or null, got {encoder!r}")
    qr = config.get("quality_range", [0.0, 1.0])
    if not (isinstance(qr, list) and len(qr) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in qr) and qr[0] < qr[1]):
        raise ArtifactError(f"{cfg_path}: field 'quality_range' must be [low, high] with low < high, got {qr!r}")
    if not isinstance(config.get("lineage", {}), dict):
        raise ArtifactError(f"{cfg_path}: field 'lineage' must be an object")
    return config


def read_weights(path: Path, expected_sha256: str | None) -> dict[str, np.ndarray]:
    """The tensors of ``weights.safetensors``, after checking the file's hash against the config's."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ArtifactError(f"{path}: {WEIGHTS_FILE} not found")
    if expected_sha256 is not None and file_sha256(weights) != expected_sha256:
        raise ArtifactError(f"{weights}: sha256 does not match the one recorded in {CONFIG_FILE}: "
                            "the weights were modified or swapped after saving; refusing to load")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights}: cannot read weights ({exc})") from None


def build_router(config: dict, tensors: dict[str, np.ndarray], where: str):
    """Instantiate the router a checked ``config`` describes and load its weights."""
    from routerzoo.routers.registry import get_kind, load_policy

    try:
        spec = get_kind(config["kind"], role="router")
    except UserError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    cls = spec.load_class()
    router_config = config_from_dict(spec.load_config(), config["config"], f"{where}: config")
    cost_model = CostModel.from_dict(config["models"], config["cost_model"], f"{where}: cost_model")
    policy = load_policy(config["policy"], where=f"{where}: policy")
    if cls.uses_embeddings and not config.get("encoder"):
        raise ArtifactError(f"{where}: a {config['kind']!r} router reads embeddings but field 'encoder' is empty")
    router = cls(router_config, models=config["models"], cost_model=cost_model, encoder=config.get("encoder"),
                 policy=policy, quality_range=tuple(config.get("quality_range", (0.0, 1.0))),
                 lineage=config.get("lineage"))
    try:
        router.load_state(tensors)
    except ArtifactError:
        raise
    except UserError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    return router


def load_artifact(path: str | os.PathLike):
    """Load a router artifact directory (checked, never unpickled)."""
    path = Path(path)
    if path.is_dir():
        refuse_pickles(path)
    config = read_config(path)
    tensors = read_weights(path, config.get("weights_sha256"))
    router = build_router(config, tensors, str(path / CONFIG_FILE))
    from routerzoo.routers.encoder_hash import check_encoder

    # after build_router: an artifact that fails its own checks is reported as such first
    check_encoder(router.encoder, router.lineage.get("encoder_sha256"), str(path / CONFIG_FILE))
    return router
