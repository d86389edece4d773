"""The model registry as a workflow: list, show, register, compare, promote (gated) and remove.

Every operation takes a tracking URI (None: ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``), so the
same code runs against the embedded SQLite store and a team's tracking server. Versions are named
``NAME/VERSION`` or ``NAME@ALIAS``; an unknown name, version or alias is one :class:`UserError`
listing what exists. Comparisons and gated promotions evaluate every version on the same data with
:func:`routerzoo.evaluation.runner.evaluate_router`, the library ``routerzoo eval`` uses.
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

from routerzoo.errors import UserError

COMPARISON_EXPERIMENT = "routerzoo-comparisons"
REGISTER_EXPERIMENT = "routerzoo"
PROMOTION_TAG = "routerzoo.promotion."
FORCED_TAG = "routerzoo.promotion.forced"
#: metrics where a smaller value is better; every other summary metric is "higher is better"
LOWER_IS_BETTER = frozenset({"pair_log_loss", "cpt50", "cpt80"})
#: what a gate can compare: the headline numbers of routerzoo.training.train.summary_metrics
GATE_METRICS = ("gap_closed", "aiq", "max_quality", "apgr", "apgr_routellm", "cpt50", "cpt80", "cascade_auc",
                "pair_accuracy", "pair_log_loss")


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
    from routerzoo.zoo.tracking import resolve_tracking_uri, setup

    mlflow = setup(tracking_uri)
    return mlflow, mlflow.MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))


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
    from routerzoo.routers import load_router

    router = load_router(f"models:/{ref.name}/{mv.version}", tracking_uri=tracking_uri)
    aliases = sorted(a for a, n in _aliases(model).items() if n == str(mv.version))
    plot = None
    if mv.run_id:
        try:
            names = {a.path for a in client.list_artifacts(mv.run_id, "reports")}
            found = sorted(n for n in names if n.endswith(".png"))
            plot = f"runs:/{mv.run_id}/{found[0]}" if found else None
        except Exception:  # a run whose artifacts cannot be listed still shows its tags
            plot = None
    return {
        "name": model.name, "version": str(mv.version), "aliases": aliases, "run_id": mv.run_id,
        "created": _when(mv.creation_timestamp), "kind": router.kind, "encoder": router.encoder,
        "candidates": list(router.models), "prices": router.cost_model.prices,
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
    """Register a router directory or a training run's router as a new version of ``name``.

    Args:
        source: an artifact directory (logged in a new run first) or the id of a run that logged
            ``router/`` (``routerzoo train`` with tracking on).
        name: registered model name.
        alias: point ``name@alias`` at the new version.

    Returns:
        The new version number.
    """
    from routerzoo.routers import load_router
    from routerzoo.zoo.lineage import lineage_tags, metric_tags
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    check_model_name(name)
    if alias is not None:
        check_alias(alias)  # before registering: a refused alias must not leave a version without it
    mlflow, client = _client(tracking_uri)
    if Path(source).is_dir():
        router = load_router(source)  # refuse a broken artifact before anything is logged
        from routerzoo.zoo.tracking import run

        tags = lineage_tags(router.lineage)
        with run(REGISTER_EXPERIMENT, run_name=f"register {name}", tags=tags, uri=tracking_uri):
            mlflow.log_artifacts(str(source), "router")
            mlflow.log_dict(router.lineage, "lineage.json")
            info = log_router_model(source, registered_name=name)
        version = info.registered_model_version
    else:
        version, tags = _register_run(mlflow, client, str(source), name)
        tags = tags | metric_tags(client.get_run(str(source)).data.metrics)
    _tag_version(client, name, version, tags)
    if alias:
        set_alias(name, alias, version)
    return int(version)


def _register_run(mlflow, client, run_id: str, name: str) -> tuple[str, dict]:
    from mlflow.exceptions import MlflowException

    from routerzoo.routers import load_router
    from routerzoo.zoo.lineage import lineage_tags
    from routerzoo.zoo.pyfunc import log_router_model

    try:
        client.get_run(run_id)
    except MlflowException:
        raise UserError(f"{run_id!r} is neither a router directory nor a run in {mlflow.get_tracking_uri()}") from None
    with tempfile.TemporaryDirectory(prefix="routerzoo-register-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="router", dst_path=tmp)
        except (MlflowException, OSError):
            raise UserError(f"run {run_id} logged no router (expected its artifact folder router/)") from None
        router = load_router(local)  # checked like any artifact before it becomes a version
        tags = lineage_tags(router.lineage)
        # the run's own pyfunc when it logged one, else log one into it now
        logged = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")
        if logged:
            version = mlflow.register_model(logged[0].model_uri, name).version
        else:
            with mlflow.start_run(run_id=run_id):
                version = log_router_model(local, registered_name=name).registered_model_version
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
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.routers import load_router

    versions = {}
    for ref in refs:
        mv = resolve_version(client, ref)
        versions[f"{ref.name}/{mv.version}"] = mv
    dataset = load_dataset(data)
    routers = {label: load_router(f"models:/{label}", tracking_uri=tracking_uri) for label in versions}
    first_label, first = next(iter(routers.items()))
    for label, router in routers.items():
        # as `routerzoo eval` does: gap closed and AIQ are relative to the candidates' own baselines
        if router.models != first.models:
            raise UserError(f"versions compared side by side need the same candidate models; {label} has {router.models}, "
                            f"{first_label} has {first.models}")
    reports = {label: evaluate_router(router, dataset, split) for label, router in routers.items()}
    return versions, reports, dataset


def compare(refs: list[str], data, split: str = "test", plot: str | os.PathLike | None = None,
            tracking_uri: str | None = None) -> Comparison:
    """Evaluate registered versions on the same data; log one table, one plot and the reports as a run."""
    from routerzoo.evaluation.report import format_table
    from routerzoo.training.train import summary_metrics
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
    table = format_table([r | {"name": label} for label, r in reports.items()])
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
                    Path(plot).parent.mkdir(parents=True, exist_ok=True)
                    tmp_out = Path(plot).with_name(f".{Path(plot).name}.tmp")
                    tmp_out.write_bytes(png.read_bytes())
                    tmp_out.replace(plot)  # a reader never sees half a PNG
                    result.plot = str(plot)
            result.plot = result.plot or f"runs:/{result.run_id}/comparison.png"
    return result


# -- promote ---------------------------------------------------------------------------------------
def _metric(report: dict, metric: str, label: str) -> float:
    from routerzoo.training.train import summary_metrics

    values = summary_metrics(report)
    value = values.get(metric)
    if value is None:
        have = sorted(k for k, v in values.items() if isinstance(v, (int, float)) and k != "n_prompts")
        raise UserError(f"--metric {metric}: {label} has no such metric on this data; available: {', '.join(have)}")
    return float(value)


def promote(ref: str, alias: str, *, if_better_than: str | None = None, metric: str = "gap_closed",
            data=None, split: str = "test", force: bool = False, tracking_uri: str | None = None) -> dict:
    """Point ``NAME@alias`` at ``NAME/VERSION``; with ``if_better_than`` only if it beats that alias.

    The gate evaluates the candidate and the current holder of ``if_better_than`` on ``data``'s
    ``split`` and promotes only when the candidate's ``metric`` is strictly better. ``force``
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
    if if_better_than is not None and data is None:
        raise UserError("--if-better-than needs --data DIR: the data both versions are evaluated on")
    if if_better_than is not None and metric not in GATE_METRICS:
        raise UserError(f"--metric {metric!r}: choose one of {', '.join(GATE_METRICS)}")
    mlflow, client = _client(tracking_uri)
    mv = resolve_version(client, parsed)
    label = f"{parsed.name}/{mv.version}"
    record: dict = {"alias": alias, "version": str(mv.version), "forced": False, "gated": if_better_than is not None,
                    "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if if_better_than is not None:
        record |= _gate(client, parsed, mv, if_better_than, metric, data, split, tracking_uri)
        if record.get("better") is False:
            how = (f"{metric} {record['candidate']:.4f} vs {record['incumbent']:.4f} for @{if_better_than} "
                   f"({parsed.name}/{record['incumbent_version']}) on {record['dataset']}[{split}]: "
                   f"{'worse' if record['delta'] < 0 else 'no better'} by {abs(record['delta']):.4f}")
            if not force:
                raise PromotionRefused(f"refusing to promote {label} to @{alias}: {how} (--force overrides)", record)
            record["forced"] = True
            record["forced_over"] = how
    from routerzoo.zoo.pyfunc import set_alias

    set_alias(parsed.name, alias, mv.version)
    tags = {f"{PROMOTION_TAG}{alias}": json.dumps(record, sort_keys=True)}
    if record["forced"]:
        tags[FORCED_TAG] = f"@{alias} at {record['at']} despite {record['forced_over']}"
    _tag_version(client, parsed.name, mv.version, tags)
    return record


def _gate(client, parsed: ModelRef, mv, incumbent_alias: str, metric: str, data, split: str, tracking_uri) -> dict:
    from mlflow.exceptions import MlflowException

    try:
        incumbent = client.get_model_version_by_alias(parsed.name, incumbent_alias)
    except MlflowException:
        return {"incumbent_version": None, "note": f"no @{incumbent_alias} yet: nothing to beat"}
    if str(incumbent.version) == str(mv.version):
        return {"incumbent_version": str(incumbent.version), "note": f"already @{incumbent_alias}"}
    refs = [ModelRef(parsed.name, version=str(mv.version)), ModelRef(parsed.name, version=str(incumbent.version))]
    _, reports, dataset = _evaluate_versions(client, refs, data, split, tracking_uri)
    cand_label, inc_label = (f"{parsed.name}/{r.version}" for r in refs)
    cand = _metric(reports[cand_label], metric, cand_label)
    inc = _metric(reports[inc_label], metric, inc_label)
    delta = (inc - cand) if metric in LOWER_IS_BETTER else (cand - inc)  # > 0: the candidate is better
    return {"metric": metric, "candidate": cand, "incumbent": inc, "delta": delta, "better": delta > 0,
            "incumbent_version": str(incumbent.version), "dataset": dataset.name,
            "dataset_sha256": dataset.manifest.get("sha256"), "split": split}


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
