"""One loader for every role, used by the CLI, evaluation, the MLflow pyfunc, the zoo and the server.

:func:`load` takes an artifact directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
``runs:/RUN_ID/PATH`` and returns what the artifact holds: a router, a deferral scorer or a policy
(the MDP router, a calibrated cascade). Every role goes through the same checks
(:func:`routerzoo.routers.core.artifact.read_document`: pickles, role, schema version and upgrades,
registered kind, weights hash; then the typed config, value ranges and the encoder fingerprint).
Registry and run URIs are downloaded with MLflow (imported only for them) into a temporary
directory that is removed before returning: the object holds its arrays in memory and keeps no file
open. :func:`load_router` is :func:`load` for routers only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from routerzoo.errors import UserError

URI_SCHEMES = ("models:/", "runs:/")
#: where a routerzoo pyfunc model keeps its artifact, by role (see routerzoo.zoo.pyfunc)
ARTIFACT_DIRS = {"router": "router", "deferral": "scorer", "policy": "policy"}
#: where a routerzoo pyfunc model keeps the router artifact
PYFUNC_ROUTER_DIR = Path("artifacts") / ARTIFACT_DIRS["router"]


def is_uri(source) -> bool:
    return isinstance(source, str) and source.startswith(URI_SCHEMES)


def artifact_dir(root: Path, uri: str) -> Path:
    """The artifact folder inside a downloaded run or model (its root, a pyfunc's artifacts/, a role folder)."""
    from routerzoo.routers.core.artifact import CONFIG_FILE

    names = list(dict.fromkeys(ARTIFACT_DIRS.values()))
    for candidate in (root, *(root / "artifacts" / n for n in names), *(root / n for n in names)):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    # pyfunc models logged by routerzoo 0.1 named the artifact after the router's folder
    logged = [p for p in (root / "artifacts").glob(f"*/{CONFIG_FILE}")] if (root / "artifacts").is_dir() else []
    if len(logged) == 1:
        return logged[0].parent
    raise UserError(f"{uri} holds no routerzoo artifact (expected {CONFIG_FILE} at its root, in artifacts/ROLE/ of "
                    f"a pyfunc model, or in one of {names}/)")


def _build_policy(config: dict, tensors: dict, where: str):
    from routerzoo.routers.core.artifact import ArtifactError
    from routerzoo.routers.registry import get_kind

    cls = get_kind(config["kind"], role="policy").load_class()
    if not hasattr(cls, "from_artifact"):
        raise ArtifactError(f"{where}: policy kind {config['kind']!r} has no artifact form (it is configured, not trained)")
    return cls.from_artifact(config, tensors, where)


def _builders():
    from routerzoo.routers.core.artifact import build_router
    from routerzoo.routers.deferral.artifact import build_deferral

    return {"router": build_router, "deferral": build_deferral, "policy": _build_policy}


def encoder_of(obj) -> str | None:
    """The encoder id an object reads prompts with (routers: ``encoder``; others: their config's), or None."""
    encoder = getattr(obj, "encoder", None)
    if isinstance(encoder, str):
        return encoder
    return getattr(getattr(obj, "config", None), "encoder", None) or None


def load_dir(path: str | os.PathLike, role: str | None = None):
    """Load an artifact directory of ``role`` (None: any role)."""
    from routerzoo.routers.core.artifact import CONFIG_FILE, read_config, read_document, read_weights
    from routerzoo.routers.encoders.fingerprint import check_encoder

    path = Path(path)
    where = str(path / CONFIG_FILE)
    config = read_document(path, role)
    if config["role"] == "router":
        config = read_config(path)  # the router's own fields (models, cost model, quality range)
    tensors = read_weights(path, config.get("weights_sha256"))
    obj = _builders()[config["role"]](config, tensors, where)
    # after building: an artifact that fails its own checks is reported as such first
    check_encoder(encoder_of(obj), (config.get("lineage") or {}).get("encoder_sha256"), where)
    return obj


def load(source: str | os.PathLike, *, role: str | None = None, tracking_uri: str | None = None):
    """A router, deferral scorer or policy from an artifact directory or an MLflow URI.

    Args:
        source: directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/PATH``.
        role: the role the caller needs ("router", "deferral", "policy"); None accepts any. An
            artifact of another role is refused with one line naming both.
        tracking_uri: MLflow tracking URI for URIs (default ``$MLFLOW_TRACKING_URI`` or ./mlflow.db).

    Raises:
        UserError: naming the source when it cannot be resolved, is of another role, or fails checks.
    """
    if not is_uri(source):
        return load_dir(source, role)
    uri = str(source).rstrip("/")
    from routerzoo.zoo.tracking import setup

    mlflow = setup(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="routerzoo-load-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except mlflow.exceptions.MlflowException as exc:
            raise UserError(f"cannot resolve {uri}: {exc.message}") from None
        except OSError as exc:
            raise UserError(f"cannot download {uri}: {exc}") from None
        obj = load_dir(artifact_dir(local, uri), role)
    lineage = getattr(obj, "lineage", None)
    if isinstance(lineage, dict):
        lineage.setdefault("loaded_from", uri)
    return obj


def load_router(source: str | os.PathLike, *, tracking_uri: str | None = None):
    """A router from an artifact directory or an MLflow URI (:func:`load` restricted to routers)."""
    return load(source, role="router", tracking_uri=tracking_uri)


def role_of(source: str | os.PathLike) -> str | None:
    """The role a local artifact directory declares (None for URIs and anything that is not one).

    Cheap (reads ``config.json`` only), for callers choosing what to do before loading; the load
    itself checks everything.
    """
    import json

    from routerzoo.routers.core.artifact import CONFIG_FILE

    if is_uri(source):
        return None
    cfg = Path(source) / CONFIG_FILE
    try:
        doc = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    return doc.get("role", "router") if isinstance(doc, dict) else None


def source_role(source: str | os.PathLike, *, tracking_uri: str | None = None) -> str | None:
    """The role of a directory or registry URI, without loading it (None when it cannot tell).

    A directory: its ``config.json`` (:func:`role_of`). ``models:/NAME@ALIAS`` or
    ``models:/NAME/VERSION``: the ``routerzoo.role`` tag ``zoo register`` puts on every version (one
    registry call, no download). Anything else (``runs:/``, an untagged version, a registry that
    cannot be reached) is None: the caller loads it and the one loader names the problem.
    """
    if not is_uri(source):
        return role_of(source)
    import re

    m = re.match(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))/?$", str(source))
    if m is None:
        return None
    from routerzoo.zoo.tracking import setup

    mlflow = setup(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        mv = (client.get_model_version_by_alias(m["name"], m["alias"]) if m["alias"]
              else client.get_model_version(m["name"], m["version"]))
    except mlflow.exceptions.MlflowException:
        return None
    return (mv.tags or {}).get("routerzoo.role")
