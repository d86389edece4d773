"""One way to load a router, used by the CLI, the MLflow pyfunc and the server.

``load_router`` takes an artifact directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
``runs:/RUN_ID/router``. Registry and run URIs are downloaded with MLflow (imported only for them)
into a temporary directory that is removed before returning: the router holds its arrays in memory
and keeps no file open.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from routerzoo.errors import UserError

URI_SCHEMES = ("models:/", "runs:/")
#: where a routerzoo pyfunc model keeps the router artifact (see routerzoo.zoo.pyfunc)
PYFUNC_ROUTER_DIR = Path("artifacts") / "router"


def is_uri(source) -> bool:
    return isinstance(source, str) and source.startswith(URI_SCHEMES)


def _router_dir(root: Path, uri: str) -> Path:
    from routerzoo.routers.artifact import CONFIG_FILE

    for candidate in (root, root / PYFUNC_ROUTER_DIR, root / "router"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    # pyfunc models logged by routerzoo 0.1 named the artifact after the router's folder
    logged = [p for p in (root / "artifacts").glob(f"*/{CONFIG_FILE}")] if (root / "artifacts").is_dir() else []
    if len(logged) == 1:
        return logged[0].parent
    raise UserError(f"{uri} holds no routerzoo router (expected {CONFIG_FILE} at its root, in "
                    f"{PYFUNC_ROUTER_DIR}/ of a pyfunc model, or in router/)")


def load_router(source: str | os.PathLike, *, tracking_uri: str | None = None):
    """A router from an artifact directory or an MLflow URI.

    Args:
        source: directory, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/PATH``.
        tracking_uri: MLflow tracking URI for URIs (default ``$MLFLOW_TRACKING_URI`` or ./mlflow.db).

    Raises:
        UserError: naming the source when it cannot be resolved, is not a router, or fails checks.
    """
    from routerzoo.routers.artifact import load_artifact

    if not is_uri(source):
        path = Path(source)
        if not path.exists():
            raise UserError(f"{path} is not a router artifact: no such directory")
        return load_artifact(path)
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
        router = load_artifact(_router_dir(local, uri))
    router.lineage.setdefault("loaded_from", uri)
    return router
