"""Artifacts on disk, for every role: ``config.json`` + ``weights.safetensors``, nothing pickled.

Routers, deferral scorers and policies (MDP, calibrated cascades) share one format and one set of
checks, applied by :func:`read_document` and :func:`read_weights` whatever the role:

* no pickled file anywhere in the folder (:func:`refuse_pickles`);
* ``role`` (absent: ``"router"``, as routerzoo 0.1-0.2 wrote them) and a ``schema_version`` this
  routerzoo reads (older ones upgraded, newer ones refused);
* ``kind`` registered for that role; its typed config validated when the object is built;
* ``weights_sha256`` present and equal to the weights file's (only schema-1 routers, written before
  the field existed, load without one, and say so in their lineage);
* every tensor within its declared range (:func:`check_values`): quality inside the artifact's
  ``quality_range``, costs >= 0, embeddings and weights finite;
* the encoder fingerprint (``lineage.encoder_sha256``) against the local encoder's weights.

A router's ``config.json`` (schema version 2)::

    schema_version  2
    role            "router"
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
import math
import os
from pathlib import Path

import numpy as np

from routerzoo.data.fsutil import file_sha256
from routerzoo.errors import UserError
from routerzoo.routers.core.cost import CostModel
from routerzoo.routers.core.typed_config import config_from_dict, config_to_dict

ARTIFACT_SCHEMA_VERSION = 2
#: the newest config.json schema of each role; lower versions go through UPGRADES
SCHEMA_VERSIONS = {"router": ARTIFACT_SCHEMA_VERSION, "deferral": 1, "policy": 1}
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
        "role": "router",
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


def write_document(path: str | os.PathLike, config: dict, tensors: dict[str, np.ndarray], *, overwrite: bool = False,
                   what: str = "artifact") -> Path:
    """Write ``config.json`` (plus ``weights_sha256``) and ``weights.safetensors`` all-or-nothing.

    The one writer of every role: the folder appears complete or not at all, and the weights'
    sha256 is recorded from the file actually written.
    """
    from safetensors.numpy import save_file

    from routerzoo.data.fsutil import atomic_directory

    path = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    if not tensors:  # safetensors needs at least one tensor; keep the file so every artifact looks alike
        tensors = {"empty": np.zeros(1)}
    config = dict(config)
    with atomic_directory(path, overwrite=overwrite, what=what) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"kind": str(config.get("kind"))})
        config["weights_sha256"] = file_sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default) + "\n")
    return path


def write_artifact(router, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``router`` to directory ``path`` all-or-nothing; returns the path."""
    tensors = router.state()
    if not tensors:  # routers without learned arrays keep their mean costs, so old readers find a tensor
        tensors = {"mean_cost": np.nan_to_num(router.cost_model.mean_cost)}
    return write_document(path, artifact_config(router), tensors, overwrite=overwrite, what="router artifact")


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


UPGRADES = {("router", 1): upgrade_v1}


def _where(path: Path) -> str:
    return str(path / CONFIG_FILE)


def read_document(path: str | os.PathLike, role: str | None = None) -> dict:
    """``config.json`` of artifact directory ``path``, checked and upgraded, for any role.

    Refuses pickles, unknown roles or kinds, schema versions this routerzoo does not read, and a
    missing or malformed ``weights_sha256``. ``role``: the role the caller expects (None: any); an
    artifact of another role is refused with one line naming both.

    Returns:
        The config with ``role`` filled in (``"router"`` when absent) and upgraded to the newest schema.
    """
    from routerzoo.routers.registry import ROLES, get_kind

    path = Path(path)
    cfg_path = path / CONFIG_FILE
    what = f"a {role} artifact" if role else "a routerzoo artifact"
    if not path.is_dir():
        raise ArtifactError(f"{path} is not {what}: no such directory")
    if not cfg_path.is_file():
        raise ArtifactError(f"{path} is not {what}: {CONFIG_FILE} not found (train one with `routerzoo train`)")
    refuse_pickles(path)
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"{cfg_path}: cannot read ({exc})") from None
    if not isinstance(config, dict):
        raise ArtifactError(f"{cfg_path}: expected a JSON object, got {type(config).__name__}")
    found = config.get("role", "router")
    if found not in ROLES:
        raise ArtifactError(f"{cfg_path}: field 'role' must be one of {list(ROLES)}, got {found!r}")
    kind = config.get("kind")
    if role is not None and found != role:
        raise ArtifactError(f"{path} is a {found} artifact (kind {kind!r}), not a {role}")
    version = config.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ArtifactError(f"{cfg_path}: field 'schema_version' must be an integer, got {version!r}")
    newest = SCHEMA_VERSIONS[found]
    if version > newest:
        raise ArtifactError(f"{cfg_path}: artifact schema version {version} is newer than this routerzoo supports "
                            f"({newest}); upgrade routerzoo")
    if version < 1:
        raise ArtifactError(f"{cfg_path}: unknown artifact schema version {version}")
    sha = config.get("weights_sha256")
    while version < newest:
        upgrade = UPGRADES.get((found, version))
        if upgrade is None:
            raise ArtifactError(f"{cfg_path}: no upgrade from {found} schema version {version}")
        config = upgrade(config, str(cfg_path))
        version = config["schema_version"]
    config["role"] = found
    if sha is None and config.get("lineage", {}).get("upgraded_from_schema") == 1:
        # routerzoo 0.1 wrote no hash: such an artifact loads, and its lineage says it was not verified
        config["lineage"]["weights_unverified"] = True
    elif not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ArtifactError(f"{cfg_path}: field 'weights_sha256' is {'missing' if sha is None else 'malformed'}: "
                            "the weights cannot be verified; refusing to load")
    else:
        config["weights_sha256"] = sha
    if not isinstance(kind := config.get("kind"), str):
        raise ArtifactError(f"{cfg_path}: field 'kind' must be a string, got {kind!r}")
    try:
        get_kind(kind, role=found)
    except UserError as exc:
        raise ArtifactError(f"{cfg_path}: {exc}") from None
    if not isinstance(config.get("config", {}), dict):
        raise ArtifactError(f"{cfg_path}: field 'config' must be an object")
    if not isinstance(config.get("lineage", {}), dict):
        raise ArtifactError(f"{cfg_path}: field 'lineage' must be an object")
    return config


def read_config(path: str | os.PathLike) -> dict:
    """Read, check and (if old) upgrade ``config.json`` of router artifact directory ``path``."""
    path = Path(path)
    config = read_document(path, role="router")
    cfg_path = path / CONFIG_FILE
    for key in ("kind", "models", "config", "cost_model", "policy"):
        if key not in config:
            raise ArtifactError(f"{cfg_path}: missing field '{key}'")
    models = config["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ArtifactError(f"{cfg_path}: field 'models' must be a non-empty list of model names, got {models!r}")
    if len(set(models)) != len(models):
        raise ArtifactError(f"{cfg_path}: field 'models' names a model twice: {models}")
    encoder = config.get("encoder")
    if encoder is not None and not isinstance(encoder, str):
        raise ArtifactError(f"{cfg_path}: field 'encoder' must be a string or null, got {encoder!r}")
    qr = config.get("quality_range", [0.0, 1.0])
    if not (isinstance(qr, list) and len(qr) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          and math.isfinite(x) for x in qr) and qr[0] < qr[1]):
        raise ArtifactError(f"{cfg_path}: field 'quality_range' must be [low, high] with low < high, got {qr!r}")
    return config


#: what each kind of tensor may hold (see :func:`check_values`); names not listed must be finite
TENSOR_RANGES = {"quality": "quality", "mean_quality": "quality", "cost": "cost", "mean_cost": "cost"}


def check_values(tensors: dict[str, np.ndarray], where: str, quality_range=(0.0, 1.0), ranges: dict | None = None) -> None:
    """Refuse values no trained artifact holds, even under a recomputed hash.

    ``quality`` tensors: inside ``quality_range`` (NaN = no outcome recorded); ``cost`` tensors:
    >= 0 (NaN = unknown); every other float tensor (embeddings, network weights, ratings): finite.
    ``ranges`` adds or overrides per-name rules (a kind's own ``tensor_ranges``); a name ending in
    ``/quality`` or ``/cost`` (a member's or embedded scorer's tensor) follows its last part.
    """
    rules = TENSOR_RANGES | dict(ranges or {})
    lo, hi = quality_range
    for name, arr in tensors.items():
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        rule = rules.get(name) or rules.get(name.rsplit("/", 1)[-1].rsplit(".", 1)[-1], "finite")
        known = arr[~np.isnan(arr)] if rule in ("quality", "cost") else arr
        if rule == "any" or known.size == 0:
            continue
        if not np.isfinite(known).all():
            raise ArtifactError(f"{where}: tensor {name!r} holds {'NaN or ' if rule == 'finite' else ''}infinite values; "
                                "no trained artifact does: refusing to load")
        if rule == "quality" and (known.min() < lo or known.max() > hi):
            raise ArtifactError(f"{where}: tensor {name!r} holds quality {known.min():.4g}..{known.max():.4g} outside the "
                                f"artifact's quality_range [{lo}, {hi}]: refusing to load")
        if rule == "cost" and known.min() < 0:
            raise ArtifactError(f"{where}: tensor {name!r} holds a negative cost ({known.min():.4g}): refusing to load")


def read_weights(path: Path, expected_sha256: str | None) -> dict[str, np.ndarray]:
    """The tensors of ``weights.safetensors``, after checking the file's hash against the config's."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ArtifactError(f"{path}: {WEIGHTS_FILE} not found")
    if expected_sha256 is not None and file_sha256(weights) != expected_sha256:  # None: a schema-1 router only
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
    check_values(tensors, f"{where}: weights", tuple(config.get("quality_range", (0.0, 1.0))),
                 getattr(cls, "tensor_ranges", None))
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
    config = read_config(path)
    tensors = read_weights(path, config.get("weights_sha256"))
    router = build_router(config, tensors, str(path / CONFIG_FILE))
    from routerzoo.routers.encoders.fingerprint import check_encoder

    # after build_router: an artifact that fails its own checks is reported as such first
    check_encoder(router.encoder, router.lineage.get("encoder_sha256"), str(path / CONFIG_FILE))
    return router
