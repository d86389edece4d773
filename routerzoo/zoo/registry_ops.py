"""The model registry as a workflow: list, show, register, compare, promote (gated) and remove.

Every operation takes a tracking URI (None: ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``), so the
same code runs against the embedded SQLite store and a team's tracking server. Versions are named
``NAME/VERSION`` or ``NAME@ALIAS``; an unknown name, version or alias is one :class:`UserError`
listing what exists. Every role is registered, shown, compared and gated the same way: routers,
deferral scorers and policies (calibrated cascades, the MDP router), loaded by the one loader.
Comparisons and gated promotions evaluate every version on the same data with
:func:`routerzoo.evaluation.artifact_eval.evaluate_artifact`, the library ``routerzoo eval`` uses,
and gate on the role's metric unless told otherwise (:data:`DEFAULT_METRIC`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from routerzoo.data.fsutil import atomic_write_bytes
from routerzoo.errors import UserError
from routerzoo.zoo.gate import (
    MEAN_METRICS,
    PAIRED_METRICS,
    check_gate_args,
    paired_bootstrap,
    score_on_common_prompts,
)

COMPARISON_EXPERIMENT = "routerzoo-comparisons"
REGISTER_EXPERIMENT = "routerzoo"
PROMOTION_TAG = "routerzoo.promotion."
FORCED_TAG = "routerzoo.promotion.forced"
#: metrics where a smaller value is better; every other summary metric is "higher is better"
LOWER_IS_BETTER = frozenset({"pair_log_loss", "cpt50", "cpt80", "cost", "calls_per_prompt"})
#: what a gate can compare: the headline numbers of routerzoo.evaluation.report.summary_metrics
GATE_METRICS = ("gap_closed", "aiq", "max_quality", "apgr", "apgr_routellm", "cpt50", "cpt80", "cascade_auc",
                "pair_accuracy", "pair_log_loss", "auroc", "deferral_auc", "quality", "cost", "calls_per_prompt")
#: each role's gate metrics when none is named, the first both versions report: routers by the share
#: of the oracle gap they close, deferral scorers by how well they rank right above wrong answers,
#: sequential policies by cascade AUC (a cascade's curve over its threshold), else the AIQ of their
#: cost-quality point (the MDP router, which has no threshold to sweep)
DEFAULT_METRIC = {"router": ("gap_closed",), "deferral": ("auroc",), "policy": ("cascade_auc", "aiq")}
#: paired bootstrap resamples of a gated promotion
GATE_BOOTSTRAP = 2000


class PromotionRefused(UserError):
    """The candidate is not better than the alias's holder on the gate's data (``record`` says by how much)."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME/VERSION`` or ``NAME@ALIAS`` (a ``models:/`` prefix is accepted)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        raw = str(text).removeprefix("models:/").strip()
        if "@" in raw:
            name, alias = raw.rsplit("@", 1)
            if not name or not alias:
                raise UserError(f"{text!r}: expected NAME@ALIAS, e.g. topic-router@champion")
            return cls(name, alias=alias)
        head, _, tail = raw.rpartition("/")
        if head and tail.isdigit():
            return cls(head, version=str(int(tail)))
        if not raw or raw.endswith("/"):
            raise UserError(f"{text!r}: expected NAME, NAME/VERSION or NAME@ALIAS")
        return cls(raw)

    @property
    def uri(self) -> str:
        return f"models:/{self}"

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version else self.name


#: what MLflow accepts as an alias (``[\w-]``, at most 255 characters, not "latest" or "v<digits>")
_ALIAS = re.compile(r"^[\w\-]{1,255}$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
#: characters a registered name may not hold: MLflow's ("/", ":"), the "@" of NAME@ALIAS, and quotes
#: (names go into registry search filters)
_NAME_FORBIDDEN = "/:@'\"\\"
_TRACKING_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")


def check_model_name(name: str, flag: str = "--name") -> str:
    """``name`` if MLflow can register it and routerzoo can refer to it, else one line naming ``flag``."""
    bad = sorted({c for c in str(name) if c in _NAME_FORBIDDEN or not c.isprintable()})
    if not str(name).strip() or name != name.strip() or bad or name in (".", ".."):
        why = f"contains {''.join(bad)!r}" if bad else "is empty or has surrounding spaces or dots only"
        raise UserError(f"{flag} {name!r}: not a registered model name ({why}); use letters, digits, '-', '_', '.', spaces")
    if len(name) > 256:
        raise UserError(f"{flag}: a registered model name has at most 256 characters, got {len(name)}")
    return name


def check_alias(alias: str, flag: str = "--alias") -> str:
    """``alias`` if MLflow accepts it, else one line naming ``flag`` (checked before anything is registered,
    so a refused alias never leaves a version behind without it)."""
    if not _ALIAS.match(str(alias)):
        raise UserError(f"{flag} {alias!r}: an alias is 1-255 letters, digits, '_' or '-'")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise UserError(f"{flag} {alias!r}: reserved by MLflow ('latest' and 'v<number>' name versions); pick another alias")
    return alias


def check_tracking_uri(uri: str | None, flag: str = "--tracking-uri", timeout_s: float = 5.0) -> str:
    """The resolved tracking URI, checked: a known scheme, an existing folder for a SQLite file, and an
    answering server for http(s) (probed once with a short timeout, so an unreachable server fails in
    seconds instead of after MLflow's retries)."""
    from urllib.parse import urlparse

    from routerzoo.zoo.tracking import resolve_tracking_uri

    resolved = resolve_tracking_uri(uri)
    where = f"{flag} {resolved}" if uri else f"tracking URI {resolved} (from $MLFLOW_TRACKING_URI)"
    scheme = urlparse(resolved).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter
        scheme = ""
    base = scheme.split("+")[0]
    if base not in _TRACKING_SCHEMES:
        raise UserError(f"{where}: unknown scheme {scheme!r}; use sqlite:///FILE, a database URI, http(s)://HOST:PORT or a folder")
    if base == "sqlite":
        path = resolved[len(scheme) + 4:] if resolved.lower().startswith(f"{scheme}:///") else ""
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise UserError(f"{where}: folder {Path(path).parent} does not exist")
    elif base in ("http", "https"):
        import urllib.error
        import urllib.request

        parsed = urlparse(resolved)
        if not parsed.hostname:
            raise UserError(f"{where}: no host in the URI")
        try:
            urllib.request.urlopen(resolved.rstrip("/") + "/health", timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass  # the server answered; MLflow reports what it says
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"{where}: cannot reach the tracking server ({reason})") from None
    return resolved


#: top-level packages whose exceptions at the CLI boundary are reported as one line
_LIBRARY_ERRORS = frozenset({"mlflow", "sqlalchemy", "alembic", "requests", "urllib3", "sqlite3"})


@contextmanager
def registry_errors(what: str, uri: str):
    """MLflow's (and its database and HTTP layers') exceptions inside as one UserError line naming
    ``--tracking-uri``; UserErrors and everything else pass through."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in _LIBRARY_ERRORS:
            raise
        text = str(getattr(exc, "message", None) or exc).strip()
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise UserError(f"{what}: the registry at {uri} (--tracking-uri) refused: {first}") from None


def _client(tracking_uri: str | None):
    from routerzoo.zoo.tracking import registry_uri, resolve_tracking_uri, setup

    mlflow = setup(tracking_uri)
    resolved = resolve_tracking_uri(tracking_uri)
    return mlflow, mlflow.MlflowClient(tracking_uri=resolved, registry_uri=registry_uri(resolved))


def _missing(exc) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def get_model(client, name: str):
    """The registered model ``name``, or one line naming the models that exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise UserError(f"registry: {exc.message}") from None
    names = sorted(m.name for m in client.search_registered_models())
    known = f"registered: {', '.join(names)}" if names else "the registry is empty (`routerzoo zoo register` adds one)"
    raise UserError(f"no registered model {name!r}; {known}")


def _versions(client, name: str) -> list:
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def _aliases(model) -> dict[str, str]:
    return {a: str(v) for a, v in (model.aliases or {}).items()}


def resolve_version(client, ref: ModelRef):
    """The ``ModelVersion`` a ``NAME/VERSION`` or ``NAME@ALIAS`` names."""
    from mlflow.exceptions import MlflowException

    model = get_model(client, ref.name)
    if ref.alias:
        try:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        except MlflowException:
            aliases = _aliases(model)
            have = ", ".join(f"@{a} → {v}" for a, v in sorted(aliases.items())) or "none"
            raise UserError(f"{ref.name} has no alias @{ref.alias}; its aliases: {have}") from None
    if ref.version:
        try:
            return client.get_model_version(ref.name, ref.version)
        except MlflowException:
            have = ", ".join(str(v.version) for v in _versions(client, ref.name)) or "none"
            raise UserError(f"{ref.name} has no version {ref.version}; its versions: {have}") from None
    raise UserError(f"{ref}: name a version (NAME/VERSION) or an alias (NAME@ALIAS)")


# -- list / show -----------------------------------------------------------------------------------
def list_models(tracking_uri: str | None = None) -> list[dict]:
    """One dict per registered model: name, versions, latest version, aliases, description."""
    _, client = _client(tracking_uri)
    out = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        versions = _versions(client, model.name)
        out.append({"name": model.name, "versions": len(versions),
                    "latest": str(versions[-1].version) if versions else None, "aliases": _aliases(model)})
    return out


def show(ref: ModelRef, tracking_uri: str | None = None) -> dict:
    """A model's versions (``NAME``) or one version's lineage, metrics, aliases, candidates and prices."""
    mlflow, client = _client(tracking_uri)
    model = get_model(client, ref.name)
    if not (ref.version or ref.alias):
        aliases = _aliases(model)
        rows = []
        for v in _versions(client, ref.name):
            metrics = {k.removeprefix("routerzoo.metric."): t for k, t in v.tags.items() if k.startswith("routerzoo.metric.")}
            rows.append({"version": str(v.version), "aliases": sorted(a for a, n in aliases.items() if n == str(v.version)),
                         "run_id": v.run_id, "created": _when(v.creation_timestamp),
                         "dataset": v.tags.get("routerzoo.lineage.dataset"), "metrics": metrics})
        return {"name": model.name, "aliases": aliases, "versions": rows}
    mv = resolve_version(client, ref)
    from routerzoo.routers.core.loader import load

    router = load(f"models:/{ref.name}/{mv.version}", tracking_uri=tracking_uri)
    aliases = sorted(a for a, n in _aliases(model).items() if n == str(mv.version))
    plot = None
    if mv.run_id:
        try:
            names = {a.path for a in client.list_artifacts(mv.run_id, "reports")}
            found = sorted(n for n in names if n.endswith(".png"))
            plot = f"runs:/{mv.run_id}/{found[0]}" if found else None
        except Exception:  # a run whose artifacts cannot be listed still shows its tags
            plot = None
    from routerzoo.routers.core.loader import encoder_of
    from routerzoo.routers.registry import get_kind

    cost_model = getattr(router, "cost_model", None)
    return {
        "name": model.name, "version": str(mv.version), "aliases": aliases, "run_id": mv.run_id,
        "created": _when(mv.creation_timestamp), "kind": router.kind, "role": get_kind(router.kind).role,
        "encoder": encoder_of(router), "candidates": list(getattr(router, "models", None) or []),
        "prices": cost_model.prices if cost_model is not None else dict(getattr(router, "prices", None) or {}),
        "scorer": getattr(getattr(router, "scorer", None), "kind", None),
        "tags": dict(sorted(mv.tags.items())), "plot": plot,
    }


def _when(ms) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).isoformat(timespec="seconds")


# -- register --------------------------------------------------------------------------------------
def _tag_version(client, name: str, version, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


def register(source: str, name: str, alias: str | None = None, tracking_uri: str | None = None) -> int:
    """Register an artifact directory of any role, or a training run's artifact, as a new version of ``name``.

    Args:
        source: an artifact directory (a router, deferral scorer, cascade or MDP router; logged in a
            new run first) or the id of a run that logged one (``routerzoo train`` with tracking on).
        name: registered model name.
        alias: point ``name@alias`` at the new version.

    Returns:
        The new version number.
    """
    from routerzoo.routers.core.loader import ARTIFACT_DIRS, load
    from routerzoo.zoo.lineage import lineage_tags, metric_tags
    from routerzoo.zoo.pyfunc import log_model, set_alias

    check_model_name(name)
    if alias is not None:
        check_alias(alias)  # before registering: a refused alias must not leave a version without it
    mlflow, client = _client(tracking_uri)
    if Path(source).is_dir():
        obj = load(source)  # refuse a broken artifact of any role before anything is logged
        from routerzoo.routers.registry import get_kind
        from routerzoo.zoo.tracking import run

        role = get_kind(obj.kind).role
        lineage = getattr(obj, "lineage", None) or {}
        tags = lineage_tags(lineage) | {"routerzoo.role": role, "routerzoo.kind": obj.kind}
        with run(REGISTER_EXPERIMENT, run_name=f"register {name}", tags=tags, uri=tracking_uri):
            mlflow.log_artifacts(str(source), ARTIFACT_DIRS[role])
            mlflow.log_dict(lineage, "lineage.json")
            info = log_model(source, registered_name=name)
        version = info.registered_model_version
        tags = tags | metric_tags(_lineage_metrics(lineage))
    else:
        version, tags = _register_run(mlflow, client, str(source), name)
        tags = tags | metric_tags(client.get_run(str(source)).data.metrics)
    _tag_version(client, name, version, tags)
    if alias:
        set_alias(name, alias, version)
    return int(version)


def _lineage_metrics(lineage: dict) -> dict:
    """``split_metric`` numbers a scorer or policy recorded in its lineage at training / calibration time."""
    from routerzoo.evaluation.report import summary_metrics

    metrics = lineage.get("metrics") if isinstance(lineage.get("metrics"), dict) else {}
    return {f"{split}_{k}": v for split, report in metrics.items() if isinstance(report, dict)
            for k, v in summary_metrics(report).items() if v is not None}


def _register_run(mlflow, client, run_id: str, name: str) -> tuple[str, dict]:
    from mlflow.exceptions import MlflowException

    from routerzoo.routers.core.loader import ARTIFACT_DIRS, load
    from routerzoo.zoo.lineage import lineage_tags
    from routerzoo.zoo.pyfunc import log_model

    try:
        client.get_run(run_id)
    except MlflowException:
        raise UserError(f"{run_id!r} is neither an artifact directory nor a run in {mlflow.get_tracking_uri()}") from None
    with tempfile.TemporaryDirectory(prefix="routerzoo-register-") as tmp:
        local = None
        for folder in dict.fromkeys(ARTIFACT_DIRS.values()):
            try:
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=tmp)
                break
            except (MlflowException, OSError):
                continue
        if local is None:
            raise UserError(f"run {run_id} logged no routerzoo artifact (expected one of the folders "
                            f"{list(dict.fromkeys(ARTIFACT_DIRS.values()))})")
        obj = load(local)  # checked like any artifact before it becomes a version
        tags = lineage_tags(getattr(obj, "lineage", None) or {})
        # the run's own pyfunc when it logged one, else log one into it now
        logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")
        if logged:
            version = mlflow.register_model(logged[0].model_uri, name).version
        else:
            with mlflow.start_run(run_id=run_id):
                version = log_model(local, registered_name=name).registered_model_version
    return str(version), tags


# -- compare ---------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Reports of several versions on one dataset split, and the run they were logged to."""

    reports: dict[str, dict]
    dataset: str
    split: str
    run_id: str | None = None
    plot: str | None = None
    table: str = ""
    notes: list[str] = field(default_factory=list)


def _evaluate_versions(client, refs: list[ModelRef], data, split: str, tracking_uri) -> tuple[dict, dict, object]:
    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.artifact_eval import evaluate_artifact
    from routerzoo.routers.core.loader import load
    from routerzoo.routers.registry import get_kind

    versions = {}
    for ref in refs:
        mv = resolve_version(client, ref)
        versions[f"{ref.name}/{mv.version}"] = mv
    dataset = load_dataset(data)
    loaded = {label: load(f"models:/{label}", tracking_uri=tracking_uri) for label in versions}
    roles = {label: get_kind(obj.kind).role for label, obj in loaded.items()}
    if len(set(roles.values())) > 1:
        raise UserError("versions of different roles cannot be compared: "
                        + ", ".join(f"{label} is a {role}" for label, role in roles.items()))
    # the same candidates (or chain models), else the numbers are measured against different baselines
    sets = {label: sorted(getattr(obj, "models", None) or []) for label, obj in loaded.items()}
    if len({tuple(v) for v in sets.values()}) > 1:
        raise UserError("versions with different candidate models are measured against different baselines and "
                        "cannot share a table: " + "; ".join(f"{label}: {v}" for label, v in sets.items()))
    reports = {label: evaluate_artifact(obj, dataset, split) | {"role": roles[label]} for label, obj in loaded.items()}
    return versions, reports, dataset


def compare(refs: list[str], data, split: str = "test", plot: str | os.PathLike | None = None,
            tracking_uri: str | None = None) -> Comparison:
    """Evaluate registered versions on the same data; log one table, one plot and the reports as a run."""
    from routerzoo.evaluation.report import format_table, summary_metrics
    from routerzoo.zoo.tracking import log_metrics, run

    if len(refs) < 1:
        raise UserError("zoo compare needs at least one NAME/VERSION")
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: use a .png file name")
    parsed = [ModelRef.parse(r) for r in refs]
    mlflow, client = _client(tracking_uri)
    versions, reports, dataset = _evaluate_versions(client, parsed, data, split, tracking_uri)
    if len(versions) < len(parsed):
        raise UserError(f"zoo compare: {', '.join(refs)} name the same version more than once")
    table = (format_table([r | {"name": label} for label, r in reports.items()])
             if all(r.get("role") == "router" for r in reports.values()) else _metric_table(reports))
    result = Comparison(reports, dataset.name, split, table=table)
    with run(COMPARISON_EXPERIMENT, run_name=f"compare {' '.join(versions)}",
             tags={"routerzoo.comparison": " ".join(versions), "routerzoo.dataset": dataset.name,
                   "routerzoo.dataset_sha256": str(dataset.manifest.get("sha256"))}, uri=tracking_uri) as active:
        result.run_id = active.info.run_id
        mlflow.log_params({"data": str(data), "split": split, "versions": " ".join(versions)})
        for label, report in reports.items():
            log_metrics(summary_metrics(report), prefix=f"{label.replace('/', '_v')}_")
        mlflow.log_text(table + "\n", "comparison.txt")
        mlflow.log_dict({"dataset": dataset.name, "split": split, "reports": reports}, "reports.json")
        curves = {k: r for k, r in reports.items() if "curve" in r}
        if curves:
            from routerzoo.evaluation.plot import plot_reports

            with tempfile.TemporaryDirectory(prefix="routerzoo-compare-") as tmp:
                png = plot_reports(curves, Path(tmp) / "comparison.png", title=f"{', '.join(curves)} on {dataset.name} ({split})")
                mlflow.log_artifact(str(png))
                if plot is not None:
                    atomic_write_bytes(plot, png.read_bytes())  # a reader never sees half a PNG
                    result.plot = str(plot)
            result.plot = result.plot or f"runs:/{result.run_id}/comparison.png"
    return result


def _metric_table(reports: dict[str, dict]) -> str:
    """A table of each version's headline numbers (scorers and policies, whose reports differ from routers')."""
    from routerzoo.evaluation.report import summary_metrics

    rows = {label: summary_metrics(r) for label, r in reports.items()}
    keys = [k for k in GATE_METRICS + ("n_answers", "n_prompts") if any(row.get(k) is not None for row in rows.values())]
    width = max(len(label) for label in rows)
    lines = [f"{'version':<{width}}  " + "  ".join(f"{k:>12}" for k in keys)]
    for label, row in rows.items():
        cells = [("-" if row.get(k) is None else f"{row[k]:.6g}") for k in keys]
        lines.append(f"{label:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


# -- promote ---------------------------------------------------------------------------------------
def _metric(report: dict, metric: str, label: str) -> float:
    from routerzoo.evaluation.report import summary_metrics

    values = summary_metrics(report)
    value = values.get(metric)
    if value is None:
        have = sorted(k for k, v in values.items() if isinstance(v, (int, float)) and k != "n_prompts")
        raise UserError(f"--metric {metric}: {label} has no such metric on this data; available: {', '.join(have)}")
    return float(value)


def promote(ref: str, alias: str, *, if_better_than: str | None = None, metric: str | None = None,
            data=None, split: str = "test", force: bool = False, tracking_uri: str | None = None,
            min_improvement: float = 0.0, confidence: float = 0.95, traffic=None, labels=None) -> dict:
    """Point ``NAME@alias`` at ``NAME/VERSION``; with ``if_better_than`` only if it beats that alias.

    The gate evaluates the candidate and the current holder of ``if_better_than`` on ``data``'s
    ``split`` on ``metric`` (None: the role's :data:`DEFAULT_METRIC`). For a router's curve metrics
    (:data:`routerzoo.zoo.gate.PAIRED_METRICS`) it runs a paired bootstrap on the same prompts and
    promotes only when the lower bound of the ``confidence`` interval of the difference exceeds
    ``min_improvement``; for the others the point difference must exceed it. Without a gate, moving
    the alias to a version whose recorded metric is worse than the current holder's adds a
    ``warning`` to the record. With ``traffic`` (a request log directory) instead of ``data``, the
    gate is the paired mean reward on the logged prompts (:mod:`routerzoo.zoo.traffic`; ``labels``:
    datasets that rate the logged prompts where no feedback does). ``force``
    promotes anyway and records that on the version (tag ``routerzoo.promotion.forced``). Every
    promotion is recorded as the version tag ``routerzoo.promotion.<alias>``.

    Returns:
        The promotion record (metric values, delta, data, forced).

    Raises:
        PromotionRefused: the candidate is not better; the message says by how much.
    """
    parsed = ModelRef.parse(ref)
    if not parsed.version:
        raise UserError(f"zoo promote {ref}: name the candidate as NAME/VERSION")
    if if_better_than is not None and data is None and traffic is None:
        raise UserError("--if-better-than needs --data DIR (a dataset both versions are evaluated on) or "
                        "--traffic LOGDIR (the server's request log)")
    if data is not None and traffic is not None:
        raise UserError("give --data DIR or --traffic LOGDIR, not both (--labels DIR adds datasets' labels to traffic)")
    if labels and traffic is None:
        raise UserError("--labels rates logged prompts: it needs --traffic LOGDIR")
    if traffic is not None and if_better_than is None:
        raise UserError("--traffic gates a promotion: add --if-better-than ALIAS (e.g. champion)")
    if if_better_than is not None and traffic is not None:
        if metric is not None and metric not in MEAN_METRICS:
            raise UserError(f"--metric {metric!r}: on --traffic the gate is the paired {', '.join(MEAN_METRICS)} "
                            "(a curve metric needs every model's outcome on every prompt: use --data)")
        check_gate_args(metric or "mean_reward", confidence, min_improvement, GATE_BOOTSTRAP, metrics=MEAN_METRICS)
    elif if_better_than is not None and metric is not None and metric not in GATE_METRICS:
        raise UserError(f"--metric {metric!r}: choose one of {', '.join(GATE_METRICS)}")
    if if_better_than is not None and traffic is None and (metric is None or metric in PAIRED_METRICS):
        check_gate_args(metric or "gap_closed", confidence, min_improvement, GATE_BOOTSTRAP)
    mlflow, client = _client(tracking_uri)
    mv = resolve_version(client, parsed)
    label = f"{parsed.name}/{mv.version}"
    record: dict = {"alias": alias, "version": str(mv.version), "forced": False, "gated": if_better_than is not None,
                    "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if if_better_than is not None and traffic is not None:
        record |= _gate_traffic(client, parsed, mv, if_better_than, traffic, labels, tracking_uri,
                                min_improvement=min_improvement, confidence=confidence)
    elif if_better_than is not None:
        record |= _gate(client, parsed, mv, if_better_than, metric, data, split, tracking_uri,
                        min_improvement=min_improvement, confidence=confidence)
    if if_better_than is not None:
        if record.get("better") is False:
            how = record.get("how") or (f"{record['metric']} {record['candidate']:.4f} vs {record['incumbent']:.4f} for @{if_better_than} "
                   f"({parsed.name}/{record['incumbent_version']}) on {record['dataset']}[{split}]: "
                   + (f"{'worse' if record['delta'] < 0 else 'no better'} by {abs(record['delta']):.4f}"
                      if record["delta"] <= 0 else f"better by {record['delta']:.4f}")
                   + _interval_text(record))
            if not force:
                raise PromotionRefused(f"refusing to promote {label} to @{alias}: {how} (--force overrides)", record)
            record["forced"] = True
            record["forced_over"] = how
    else:
        role = (mv.tags or {}).get("routerzoo.role", "router")
        warning = _recorded_metric_warning(client, parsed.name, mv, alias, metric or DEFAULT_METRIC.get(role, ("gap_closed",))[0])
        if warning:
            record["warning"] = warning
    from routerzoo.zoo.pyfunc import set_alias

    set_alias(parsed.name, alias, mv.version)
    tags = {f"{PROMOTION_TAG}{alias}": json.dumps(record, sort_keys=True)}
    if record["forced"]:
        tags[FORCED_TAG] = f"@{alias} at {record['at']} despite {record['forced_over']}"
    _tag_version(client, parsed.name, mv.version, tags)
    return record


def _incumbent(client, parsed: ModelRef, mv, incumbent_alias: str):
    """The version ``@incumbent_alias`` names and None, or None and the gate's record when there is
    nothing to compare (no such alias yet, or it names ``mv`` already): what every gate starts with."""
    from mlflow.exceptions import MlflowException

    try:
        incumbent = client.get_model_version_by_alias(parsed.name, incumbent_alias)
    except MlflowException:
        return None, {"incumbent_version": None, "note": f"no @{incumbent_alias} yet: nothing to beat"}
    if str(incumbent.version) == str(mv.version):
        return None, {"incumbent_version": str(incumbent.version), "note": f"already @{incumbent_alias}"}
    return incumbent, None


def _gate_traffic(client, parsed: ModelRef, mv, incumbent_alias: str, traffic, labels, tracking_uri, *,
                  min_improvement: float = 0.0, confidence: float = 0.95) -> dict:
    """The gate on served traffic: paired mean reward of both versions' choices on the logged prompts."""
    incumbent, settled = _incumbent(client, parsed, mv, incumbent_alias)
    if settled is not None:
        return settled
    result = _compare_versions_on_traffic(
        [ModelRef(parsed.name, version=str(mv.version)), ModelRef(parsed.name, version=str(incumbent.version))],
        traffic, labels, tracking_uri, min_improvement=min_improvement, confidence=confidence)
    from routerzoo.zoo.traffic import describe_gate, is_better

    better = is_better(result)
    record = result.record() | {"incumbent_version": str(incumbent.version), "traffic": str(traffic),
                                "labels": [str(p) for p in labels or ()], "better": better}
    if not better:
        record["how"] = f"on traffic {traffic} against @{incumbent_alias} ({parsed.name}/{incumbent.version}): " \
                        + describe_gate(result)
    return record


def _compare_versions_on_traffic(refs: list[ModelRef], traffic, labels, tracking_uri, **gate):
    """Load two versions (challenger first) and compare them on a request log."""
    from routerzoo.evaluation.runner import use_embedding_cache
    from routerzoo.routers.core.loader import load
    from routerzoo.routers.registry import get_kind
    from routerzoo.zoo.traffic import compare_on_traffic, dataset_labels, read_traffic

    _, client = _client(tracking_uri)
    versions = [resolve_version(client, r) for r in refs]
    names = [f"{r.name}/{v.version}" for r, v in zip(refs, versions, strict=True)]
    if names[0] == names[1]:
        raise UserError(f"zoo compare --traffic: {refs[0]} and {refs[1]} are the same version ({names[0]})")
    routers = [load(f"models:/{n}", tracking_uri=tracking_uri) for n in names]
    for n, r in zip(names, routers, strict=True):
        role = get_kind(r.kind).role
        if role != "router":
            raise UserError(f"{n} is a {role}: comparing on traffic predicts routers' decisions")
        use_embedding_cache(r)
    log = read_traffic(traffic)
    extra = dataset_labels(labels, {p for p, _, _ in log.routed})
    # the server logs a registered version as name@version (serving.loader.LoadedRouter.label)
    served = (f"{refs[0].name}@{versions[0].version}", f"{refs[1].name}@{versions[1].version}")
    return compare_on_traffic(routers[0], routers[1], served, log, extra, n_boot=GATE_BOOTSTRAP, **gate)


def compare_on_traffic_run(refs: list[str], traffic, labels=None, tracking_uri: str | None = None,
                           confidence: float = 0.95):
    """``zoo compare CHALLENGER CHAMPION --traffic LOGDIR``: the comparison, logged as a run.

    Returns:
        (the :class:`~routerzoo.zoo.traffic.TrafficComparison`, the run id).
    """
    from routerzoo.zoo.tracking import log_metrics, run

    if len(refs) != 2:
        raise UserError(f"zoo compare --traffic compares two versions, CHALLENGER CHAMPION; got {len(refs)}")
    check_gate_args("mean_reward", confidence, 0.0, GATE_BOOTSTRAP, metrics=MEAN_METRICS)
    parsed = [ModelRef.parse(r) for r in refs]
    mlflow, _ = _client(tracking_uri)
    result = _compare_versions_on_traffic(parsed, traffic, labels, tracking_uri, confidence=confidence)
    with run(COMPARISON_EXPERIMENT, run_name=f"compare {' vs '.join(result.labels)} on traffic",
             tags={"routerzoo.comparison": " ".join(result.labels), "routerzoo.traffic": str(traffic)},
             uri=tracking_uri) as active:
        mlflow.log_params({"traffic": str(traffic), "versions": " ".join(result.labels),
                           "labels": " ".join(str(p) for p in labels or ()) or "-"})
        log_metrics(result.record())
        mlflow.log_text(result.table() + "\n", "comparison.txt")
        mlflow.log_dict(result.record(), "traffic_comparison.json")
        return result, active.info.run_id


def _interval_text(record: dict) -> str:
    if record.get("ci") is None:
        return f" (needs more than {record.get('min_improvement', 0.0):+.4f})" if record.get("min_improvement") else ""
    lo, hi = record["ci"]
    return (f"; {record['confidence']:.0%} paired CI [{lo:+.4f}, {hi:+.4f}] over {record['n_prompts']} prompts, "
            f"lower bound must exceed {record['min_improvement']:+.4f}")


def _gate(client, parsed: ModelRef, mv, incumbent_alias: str, metric: str, data, split: str, tracking_uri,
          *, min_improvement: float = 0.0, confidence: float = 0.95) -> dict:
    incumbent, settled = _incumbent(client, parsed, mv, incumbent_alias)
    if settled is not None:
        return settled
    refs = [ModelRef(parsed.name, version=str(mv.version)), ModelRef(parsed.name, version=str(incumbent.version))]
    cand_label, inc_label = (f"{parsed.name}/{r.version}" for r in refs)
    where = {"incumbent_version": str(incumbent.version), "split": split}
    from routerzoo.routers.core.loader import load
    from routerzoo.routers.registry import get_kind

    candidate = load(f"models:/{cand_label}", tracking_uri=tracking_uri)
    role = get_kind(candidate.kind).role
    if metric is None and len(DEFAULT_METRIC[role]) == 1:
        metric = DEFAULT_METRIC[role][0]
    if role == "router" and metric in PAIRED_METRICS:
        # both versions on the same prompts, resampled jointly: the interval is of the difference
        from routerzoo.data.dataset import load_dataset

        dataset = load_dataset(data)
        routers = {cand_label: candidate, inc_label: load(f"models:/{inc_label}", tracking_uri=tracking_uri)}
        if get_kind(routers[inc_label].kind).role != "router":
            raise UserError(f"@{incumbent_alias} ({inc_label}) is a {get_kind(routers[inc_label].kind).role}, "
                            f"{cand_label} a router: versions of different roles cannot be compared")
        scored = score_on_common_prompts(routers, dataset, split)
        result = paired_bootstrap(scored[cand_label], scored[inc_label], metric, confidence=confidence,
                                  min_improvement=min_improvement, n_boot=GATE_BOOTSTRAP)
        return result.record() | where | {"dataset": dataset.name, "dataset_sha256": dataset.manifest.get("sha256")}
    _, reports, dataset = _evaluate_versions(client, refs, data, split, tracking_uri)
    if metric is None:  # the first of the role's metrics both versions report
        from routerzoo.evaluation.report import summary_metrics

        have = [summary_metrics(reports[label]) for label in (cand_label, inc_label)]
        metric = next((m for m in DEFAULT_METRIC[role] if all(h.get(m) is not None for h in have)), DEFAULT_METRIC[role][-1])
    cand = _metric(reports[cand_label], metric, cand_label)
    inc = _metric(reports[inc_label], metric, inc_label)
    delta = (inc - cand) if metric in LOWER_IS_BETTER else (cand - inc)  # > 0: the candidate is better
    return {"metric": metric, "candidate": cand, "incumbent": inc, "delta": delta, "better": delta > min_improvement,
            "min_improvement": min_improvement, "dataset": dataset.name,
            "dataset_sha256": dataset.manifest.get("sha256")} | where


def _recorded(mv, metric: str) -> tuple[str, float] | None:
    """The version's recorded ``metric`` (its eval report's, else its validation report's)."""
    from routerzoo.zoo.lineage import METRIC_TAG_PREFIX

    for key in (f"eval_{metric}", f"val_{metric}"):
        raw = (mv.tags or {}).get(METRIC_TAG_PREFIX + key)
        try:
            return key, float(raw)
        except (TypeError, ValueError):
            continue
    return None


def _recorded_metric_warning(client, name: str, mv, alias: str, metric: str) -> str | None:
    """A warning when ``mv`` is worse on its recorded ``metric`` than the version holding ``alias``."""
    from mlflow.exceptions import MlflowException

    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    if str(holder.version) == str(mv.version):
        return None
    mine, theirs = _recorded(mv, metric), _recorded(holder, metric)
    if mine is None or theirs is None or mine[0] != theirs[0]:
        return None  # nothing comparable recorded: say nothing rather than guess
    worse = mine[1] > theirs[1] if metric in LOWER_IS_BETTER else mine[1] < theirs[1]
    if not worse:
        return None
    same = mv.tags.get("routerzoo.lineage.dataset_sha256") == holder.tags.get("routerzoo.lineage.dataset_sha256")
    return (f"{name}/{mv.version} is worse than @{alias} ({name}/{holder.version}) on its recorded {mine[0]}: "
            f"{mine[1]:.4f} vs {theirs[1]:.4f}" + ("" if same else " (recorded on different datasets)")
            + "; `--if-better-than` gates on the same data")


# -- remove ----------------------------------------------------------------------------------------
def remove(ref: str, force: bool = False, tracking_uri: str | None = None) -> str:
    """Delete a version (``NAME/VERSION``), a whole model (``NAME``) or an alias (``NAME@ALIAS``).

    A version or model that an alias points at is kept unless ``force``: removing the champion by
    accident would break every server following it. Runs and their artifacts are left alone.

    Returns:
        What was removed, in words.
    """
    parsed = ModelRef.parse(ref)
    _, client = _client(tracking_uri)
    model = get_model(client, parsed.name)
    aliases = _aliases(model)
    if parsed.alias:
        resolve_version(client, parsed)
        client.delete_registered_model_alias(parsed.name, parsed.alias)
        return f"removed alias {parsed}"
    if parsed.version:
        resolve_version(client, parsed)
        held = sorted(a for a, v in aliases.items() if v == parsed.version)
        if held and not force:
            raise UserError(f"{parsed} holds alias {', '.join('@' + a for a in held)}; promote another version first "
                            "or pass --force")
        client.delete_model_version(parsed.name, parsed.version)
        return f"removed {parsed}"
    if aliases and not force:
        raise UserError(f"{parsed.name} has alias(es) {', '.join('@' + a for a in sorted(aliases))}; pass --force to "
                        "remove the model with all its versions")
    n = len(_versions(client, parsed.name))
    client.delete_registered_model(parsed.name)
    return f"removed {parsed.name} ({n} version{'s' if n != 1 else ''})"
