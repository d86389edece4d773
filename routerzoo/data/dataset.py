"""A routing dataset on disk: Parquet tables plus a ``dataset.json`` manifest.

Layout of a dataset directory::

    dataset.json          manifest: schema version, models, prices, counts, sources, split, sha256
    outcomes.parquet      benchmark outcomes (see :mod:`routerzoo.data.schema`), optional
    preferences.parquet   preference pairs, optional

At least one table is present. Both carry a ``split`` column assigned by
:func:`routerzoo.data.splits.assign_splits`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.matrix import OutcomeMatrix, PreferenceMatrix
from routerzoo.data.schema import (
    OUTCOME_COLUMNS,
    OUTCOME_REQUIRED,
    PREFERENCE_COLUMNS,
    PREFERENCE_REQUIRED,
    SPLITS,
    WINNERS,
    strip_private,
    validate_outcomes,
    validate_preferences,
)
from routerzoo.data.splits import SplitSpec, assign_splits
from routerzoo.errors import DataError, UserError

SCHEMA_VERSION = 1
MANIFEST = "dataset.json"
#: columns added after schema 1 that enter the fingerprint only where a dataset uses them
OPTIONAL_IN_FINGERPRINT_IF_SET = ("token_logprobs",)
OUTCOMES_FILE = "outcomes.parquet"
PREFERENCES_FILE = "preferences.parquet"


#: 1: ``sha256`` covered the tables' content only; 2: content, split labels and split spec
FINGERPRINT_VERSION = 2


def content_fingerprint(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None) -> str:
    """sha256 of the tables' content without the split (not of the Parquet bytes, which embed writer
    versions): the same data re-split keeps it. It is the whole fingerprint of a version-1 manifest.
    """
    h = hashlib.sha256()
    for name, df, cols in (("outcomes", outcomes, OUTCOME_COLUMNS), ("preferences", preferences, PREFERENCE_COLUMNS)):
        if df is None:
            continue
        h.update(name.encode())
        # optional columns that are empty everywhere do not count, so adding a new optional column
        # to the schema leaves the fingerprints of existing datasets unchanged
        cols = [c for c in cols if c not in OPTIONAL_IN_FINGERPRINT_IF_SET or (c in df.columns and df[c].notna().any())]
        canon = df[cols].sort_values(cols[:3] if name == "outcomes" else cols[:4], kind="mergesort")
        if "token_logprobs" in canon.columns:
            # lists as made, arrays as read back from Parquet: one text either way (str of an array differs)
            canon = canon.assign(token_logprobs=[None if v is None or (isinstance(v, float) and v != v)
                                                 else [float(x) for x in v] for v in canon["token_logprobs"]])
        canon = canon.astype("object").where(canon.notna(), None).astype(str)
        h.update(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _split_labels(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None) -> pd.Series:
    """The split label of every prompt, indexed by prompt id (sorted)."""
    parts = [df[["prompt_id", "split"]] for df in (outcomes, preferences) if df is not None and "split" in df.columns]
    if not parts:
        return pd.Series([], dtype=object)
    both = pd.concat(parts).drop_duplicates()
    return both.set_index("prompt_id")["split"].sort_index(kind="mergesort")


def split_fingerprint(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None, spec: dict | None) -> str:
    """sha256 of which prompt is in which split, and of the split spec the manifest states."""
    h = hashlib.sha256(json.dumps(spec or {}, sort_keys=True).encode())
    labels = _split_labels(outcomes, preferences)
    frame = pd.DataFrame({"prompt_id": labels.index.astype(str), "split": labels.astype(str).to_numpy()})
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _combine(content: str, split: str) -> str:
    return hashlib.sha256(f"routerzoo-dataset/{FINGERPRINT_VERSION}\0{content}\0{split}".encode()).hexdigest()


def fingerprint(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None, spec: dict | None = None) -> str:
    """The dataset's ``sha256``: its content, which prompt is in which split, and the split spec, so
    relabelling prompts (test as train) or editing the stated split gives a different fingerprint.
    Row order does not count. :func:`content_fingerprint` is the split-independent part."""
    return _combine(content_fingerprint(outcomes, preferences), split_fingerprint(outcomes, preferences, spec))


def _rows_of_split(df, split: str | None):
    """The rows of ``df`` in ``split`` (None or "all": every row); an unknown split is a UserError."""
    if split in (None, "all"):
        return df
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {list(SPLITS)} or 'all'")
    return df[df["split"] == split]


@dataclass
class RoutingDataset:
    """In-memory dataset: the canonical tables and the manifest."""

    outcomes: pd.DataFrame | None = None
    preferences: pd.DataFrame | None = None
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    #: records an import left out with ``on_invalid="skip"``: dicts with file, row, field, reason
    rejects: list = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(self.manifest.get("models", []))

    @property
    def name(self) -> str:
        return self.manifest.get("name") or (self.path.name if self.path else "dataset")

    def outcome_matrix(self, split: str | None = None, models: list[str] | None = None) -> OutcomeMatrix:
        """Pivot outcomes to arrays.

        Args:
            split: "train", "val", "test" or None / "all" for every prompt.
            models: column order; defaults to the dataset's models. Every name must exist.
        """
        if self.outcomes is None:
            raise UserError(f"dataset {self.name} has no benchmark outcomes (it holds preference pairs only)")
        df = _rows_of_split(self.outcomes, split)
        models = list(models) if models is not None else self.models
        unknown = sorted(set(models) - set(self.models))
        if unknown:
            raise UserError(f"dataset {self.name} has no outcomes for model(s) {unknown}; it has {self.models}")
        df = df[df["model"].isin(models)]
        prompts = df.drop_duplicates("prompt_id").set_index("prompt_id")
        order = sorted(prompts.index)

        def pivot(column: str, dtype=np.float64):
            table = df.pivot(index="prompt_id", columns="model", values=column).reindex(index=order, columns=models)
            if dtype is object:
                return table.astype(object).where(table.notna(), None).to_numpy(dtype=object)
            return table.to_numpy(dtype=dtype, na_value=np.nan)

        def optional(column: str, dtype=np.float64):
            if column not in df.columns or not df[column].notna().any():
                return None
            return pivot(column, dtype)

        return OutcomeMatrix(
            prompt_ids=order,
            prompts=prompts.loc[order, "prompt"].tolist(),
            models=models,
            quality=pivot("quality"),
            cost=pivot("cost"),
            categories=prompts.loc[order, "category"].tolist(),
            responses=optional("response", object),
            token_logprobs=optional("token_logprobs", object),
            input_tokens=optional("input_tokens"),
            output_tokens=optional("output_tokens"),
        )

    def preference_matrix(self, split: str | None = None, models: list[str] | None = None) -> PreferenceMatrix:
        """Preference pairs as arrays.

        Args:
            split: "train", "val", "test" or None / "all".
            models: the model list the indices refer to (default: the dataset's models); pairs
                naming a model outside it are left out.
        """
        if self.preferences is None:
            raise UserError(f"dataset {self.name} has no preference pairs (it holds benchmark outcomes only)")
        df = _rows_of_split(self.preferences, split)
        models = list(models) if models is not None else self.models
        index = {m: i for i, m in enumerate(models)}
        df = df[df["model_a"].isin(index) & df["model_b"].isin(index)]
        outcome = df["winner"].map({"a": 1.0, "b": 0.0, "tie": 0.5}).to_numpy(dtype=np.float64)
        return PreferenceMatrix(
            prompt_ids=df["prompt_id"].tolist(),
            prompts=df["prompt"].tolist(),
            models=models,
            a=df["model_a"].map(index).to_numpy(dtype=np.int64),
            b=df["model_b"].map(index).to_numpy(dtype=np.int64),
            outcome=outcome,
            weight=df["weight"].to_numpy(dtype=np.float64),
        )


def _prompt_table(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None) -> pd.DataFrame:
    parts = [df[["prompt_id", "prompt", "category", "group"]] for df in (outcomes, preferences) if df is not None]
    return pd.concat(parts).drop_duplicates("prompt_id")


def make_dataset(
    outcomes: pd.DataFrame | None = None,
    preferences: pd.DataFrame | None = None,
    *,
    name: str,
    sources: list[dict] | None = None,
    prices: dict | None = None,
    split: SplitSpec | None = None,
    notes: list[str] | None = None,
) -> RoutingDataset:
    """Validate tables, assign splits and build the manifest (nothing is written).

    A dataset with outcomes of a single model gets a note saying there is nothing to route between.
    """
    if outcomes is None and preferences is None:
        raise UserError("a dataset needs benchmark outcomes, preference pairs, or both")
    if outcomes is not None:
        outcomes = strip_private(validate_outcomes(outcomes))
    if preferences is not None:
        preferences = strip_private(validate_preferences(preferences))
    prompt_table = _prompt_table(outcomes, preferences)
    dup_text = prompt_table.groupby("prompt_id")["prompt"].nunique()
    if (dup_text > 1).any():
        raise DataError(f"prompt_id {dup_text.index[dup_text > 1][0]!r} has different texts in outcomes and preferences")
    split = split or SplitSpec()
    labels = assign_splits(prompt_table, split)
    models: list[str] = []
    if outcomes is not None:
        outcomes = outcomes.assign(split=outcomes["prompt_id"].map(labels).to_numpy())
        models += list(dict.fromkeys(outcomes["model"]))
    if preferences is not None:
        preferences = preferences.assign(split=preferences["prompt_id"].map(labels).to_numpy())
        models += [m for m in dict.fromkeys(pd.concat([preferences["model_a"], preferences["model_b"]])) if m not in models]
    notes = list(notes or [])
    if len(models) == 1:
        notes.append(f"only one model ({models[0]}): there is nothing for a router to choose between; "
                     "add other models' outcomes to train or compare routers")
    counts: dict = {"prompts": int(len(prompt_table)), "models": len(models)}
    per_model: dict = {}
    if outcomes is not None:
        counts["outcomes"] = int(len(outcomes))
        stats = outcomes.groupby("model").agg(n=("quality", "size"), quality=("quality", "mean"), cost=("cost", "mean"))
        per_model = {m: {"n": int(r.n), "mean_quality": float(r.quality), "mean_cost": float(r.cost)} for m, r in stats.iterrows()}
    if preferences is not None:
        counts["preferences"] = int(len(preferences))
    counts["splits"] = {s: int((labels == s).sum()) for s in SPLITS}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tables": [t for t, df in (("outcomes", outcomes), ("preferences", preferences)) if df is not None],
        "models": models,
        "prices": prices or {},
        "counts": counts,
        "per_model": per_model,
        "sources": sources or [],
        "split": split.to_dict(),
        "notes": notes,
    }
    _stamp(manifest, outcomes, preferences)
    return RoutingDataset(outcomes, preferences, manifest)


def _stamp(manifest: dict, outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None,
           content: str | None = None) -> None:
    """Set the manifest's fingerprints (``sha256``, ``content_sha256``, ``fingerprint_version``) for the tables."""
    content = content or content_fingerprint(outcomes, preferences)
    manifest["content_sha256"] = content
    manifest["fingerprint_version"] = FINGERPRINT_VERSION
    manifest["sha256"] = _combine(content, split_fingerprint(outcomes, preferences, manifest.get("split")))


#: files a dataset directory holds besides the tables (rejects of an import with --on-invalid skip)
REJECTS_FILE = "rejects.csv"
TABLE_FILES = {"outcomes": OUTCOMES_FILE, "preferences": PREFERENCES_FILE}
_HEX = frozenset("0123456789abcdef")


def _table_bytes(df: pd.DataFrame, fname: str) -> bytes:
    """A table as Parquet bytes; Arrow's type errors (e.g. mixed-type columns) become a DataError."""
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"cannot write table: {exc}", file=fname) from None
    return buf.getvalue()


def save_dataset(dataset: RoutingDataset, out: str | os.PathLike, overwrite: bool = False, *,
                 extra_files: dict[str, bytes] | None = None, keep_other_files: bool = False) -> Path:
    """Write Parquet tables and ``dataset.json`` into directory ``out``, all or nothing.

    Everything is written into a temporary directory beside ``out`` which then replaces ``out`` in
    one rename (:func:`routerzoo.data.fsutil.atomic_directory`): a crash or an error at any step
    leaves the old dataset complete and loadable, never a mix. A lock file ``.<name>.lock`` beside
    ``out`` makes a second concurrent writer fail with a clear error.

    Args:
        dataset: the dataset (its manifest's ``sha256`` must match its tables).
        out: the dataset directory.
        overwrite: replace an existing non-empty ``out``; otherwise that is a UserError.
        extra_files: more files to write into the directory (name -> bytes), e.g. ``rejects.csv``.
        keep_other_files: carry over files of the old ``out`` that this write does not produce
            (re-splitting in place keeps an import's ``rejects.csv``).

    The manifest records each table file's size and sha256 (``files``), which lets
    :func:`load_dataset` verify the content quickly.

    Raises:
        UserError: ``out`` is a file, exists without ``overwrite``, or is being written by another
            process; the tables do not match the manifest's fingerprint.
    """
    from routerzoo.data.fsutil import atomic_directory

    out = Path(out)
    tables = {"outcomes": dataset.outcomes, "preferences": dataset.preferences}
    manifest = dict(dataset.manifest)
    old_style = manifest.get("fingerprint_version", 1) == 1  # loaded unverified from an older routerzoo
    expected = (content_fingerprint(tables["outcomes"], tables["preferences"]) if old_style
                else fingerprint(tables["outcomes"], tables["preferences"], manifest.get("split")))
    if expected != manifest.get("sha256"):
        raise UserError("the dataset's tables changed after its manifest was made (sha256 differs); rebuild it "
                        "with make_dataset before saving")
    if old_style:
        _stamp(manifest, tables["outcomes"], tables["preferences"], content=expected)
    blobs = {TABLE_FILES[t]: _table_bytes(df, TABLE_FILES[t]) for t, df in tables.items() if df is not None}
    # per-file hashes, bound to the content fingerprint they were made for (a fast check at load)
    manifest["files"] = {name: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest(), "content_sha256": manifest["sha256"]}
                         for name, b in blobs.items()}
    with atomic_directory(out, overwrite=overwrite, what="dataset directory") as tmp:
        for name, blob in {**blobs, **(extra_files or {})}.items():
            _write_file(tmp / name, blob)
        if keep_other_files and out.is_dir():
            for old in out.iterdir():
                if old.name not in (MANIFEST, *TABLE_FILES.values()) and not (tmp / old.name).exists():
                    if old.is_dir():
                        shutil.copytree(old, tmp / old.name, symlinks=True)
                    else:
                        shutil.copy2(old, tmp / old.name, follow_symlinks=False)
        _write_file(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    dataset.manifest = manifest
    dataset.path = out
    return out


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _bad_manifest(manifest_path: Path, what: str) -> DataError:
    return DataError(f"invalid manifest: {what} (the dataset was not written by routerzoo, or was edited; "
                     "re-create it with `routerzoo data import`)", file=str(manifest_path))


def _check_manifest(manifest, manifest_path: Path) -> None:
    """The manifest's shape: an object with typed keys. Raises DataError naming the first problem."""
    if not isinstance(manifest, dict):
        raise _bad_manifest(manifest_path, f"expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad_manifest(manifest_path, f"schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise UserError(f"{manifest_path} has schema version {version}; this routerzoo reads up to {SCHEMA_VERSION}")
    if version < 1:
        raise _bad_manifest(manifest_path, f"schema_version must be >= 1, got {version}")
    tables = manifest.get("tables")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise _bad_manifest(manifest_path, f"tables must be a non-empty list of table names, got {tables!r}")
    unknown = [t for t in tables if t not in TABLE_FILES]
    if unknown or len(set(tables)) != len(tables):
        raise _bad_manifest(manifest_path, f"tables {tables!r}: each of {list(TABLE_FILES)} at most once")
    models = manifest.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models) or len(set(models)) != len(models):
        raise _bad_manifest(manifest_path, f"models must be a list of distinct non-empty strings, got {str(models)[:80]}")
    sha = manifest.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _HEX:
        raise _bad_manifest(manifest_path, f"sha256 must be 64 hex digits, got {str(sha)[:80]!r}")
    for key, kind in (("name", str), ("created", str), ("prices", dict), ("counts", dict), ("per_model", dict),
                      ("sources", list), ("split", dict), ("notes", list), ("files", dict)):
        if key in manifest and manifest[key] is not None and not isinstance(manifest[key], kind):
            raise _bad_manifest(manifest_path, f"{key} must be a JSON {'object' if kind is dict else kind.__name__ if kind is str else 'list'}, "
                                f"got {type(manifest[key]).__name__}")
    fv = manifest.get("fingerprint_version", 1)
    if isinstance(fv, bool) or fv not in (1, FINGERPRINT_VERSION):
        raise _bad_manifest(manifest_path, f"fingerprint_version must be 1 or {FINGERPRINT_VERSION}, got {fv!r}")
    if fv == FINGERPRINT_VERSION:
        content = manifest.get("content_sha256")
        if not isinstance(content, str) or len(content) != 64 or not set(content) <= _HEX:
            raise _bad_manifest(manifest_path, f"content_sha256 must be 64 hex digits, got {str(content)[:80]!r}")
    for name, entry in (manifest.get("files") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise _bad_manifest(manifest_path, f"files[{name!r}] must be an object with a sha256")


def _check_table(df: pd.DataFrame, table: str, file: Path) -> None:
    """Invariants of a loaded table (cheap, vectorised). Raises DataError naming what is wrong."""
    required = (OUTCOME_REQUIRED if table == "outcomes" else PREFERENCE_REQUIRED) + ["split"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"table lacks required column(s) {missing}", file=str(file))

    def fail(mask, message: str, field: str):
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            value = df[field].iat[i]
            raise DataError(f"{message} (table row {i + 1}: {str(value)[:60]!r}); the file was modified or is damaged",
                            file=str(file), field=field)

    text = ["prompt_id", "prompt", "model"] if table == "outcomes" else ["prompt_id", "prompt", "model_a", "model_b"]
    for col in text:
        fail(df[col].isna().to_numpy(), "missing value", col)
    fail(~df["split"].isin(SPLITS).to_numpy(), f"split must be one of {list(SPLITS)}", "split")
    if table == "outcomes":
        for col in ("quality", "cost"):
            if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
                raise DataError(f"column has type {df[col].dtype}, expected numbers", file=str(file), field=col)
        q = df["quality"].to_numpy(dtype=np.float64)
        fail(~((q >= 0) & (q <= 1)), "quality must be a number in [0, 1]", "quality")
        c = df["cost"].to_numpy(dtype=np.float64)
        fail(~(np.isfinite(c) & (c >= 0)), "cost must be a finite number >= 0", "cost")
        fail(df.duplicated(["prompt_id", "model"]).to_numpy(), "duplicate (prompt_id, model) record", "prompt_id")
    else:
        fail(~df["winner"].isin(WINNERS).to_numpy(), f"winner must be one of {list(WINNERS)}", "winner")
        if "weight" in df.columns:
            w = pd.to_numeric(df["weight"], errors="coerce").to_numpy(dtype=np.float64)
            fail(~(np.isfinite(w) & (w > 0)), "weight must be a positive number", "weight")


def load_dataset(path: str | os.PathLike, *, verify: bool | str = True) -> RoutingDataset:
    """Read a dataset directory written by :func:`save_dataset`, checking what it loads.

    Checks, each failure a one-line :class:`~routerzoo.errors.DataError` naming the file and what is
    wrong: the manifest's shape (an object; ``schema_version`` an integer; ``tables`` known names;
    ``models`` strings; ``sha256`` 64 hex digits; typed optional keys); every table the manifest
    names exists and no unlisted table is present; each table's required columns, quality in
    [0, 1], cost finite and >= 0, valid split labels, winners and weights, unique (prompt, model)
    outcomes; the manifest's models equal the tables' models; and the content matches the
    manifest's ``sha256``.

    Args:
        path: the dataset directory.
        verify: ``True`` checks the content and the split against the manifest: the table files'
            sha256 recorded at save time when present (fast), else (or when a file's bytes changed)
            the content fingerprint is recomputed with :func:`fingerprint`. ``"full"`` always
            recomputes it; ``"content"`` checks the content but not the split (for re-splitting a
            dataset whose split was edited); ``False`` skips both (the other checks still run).

    The manifest's counts (prompts, models, rows, prompts per split, rows per model) must be the
    tables'. A manifest written before the fingerprint covered the split (no ``fingerprint_version``)
    is verified as it was written and upgraded in memory, with a note.

    Raises:
        UserError: when the directory, manifest or a table is missing, unreadable or inconsistent.
    """
    import io

    path = Path(path)
    manifest_path = path / MANIFEST
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a routerzoo dataset directory")
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a routerzoo dataset: {MANIFEST} not found (create one with `routerzoo data import`)")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"manifest is not valid JSON: {exc}", file=str(manifest_path)) from None
    except OSError as exc:
        raise DataError(f"cannot read manifest: {exc.strerror or exc}", file=str(manifest_path)) from None
    _check_manifest(manifest, manifest_path)
    files = manifest.get("files") or {}
    tables: dict = {"outcomes": None, "preferences": None}
    verified = True
    for table, fname in TABLE_FILES.items():
        file = path / fname
        if table not in manifest["tables"]:
            if file.exists():
                raise DataError(f"{fname} is present but the manifest does not list it (the directory mixes two "
                                "versions of a dataset?)", file=str(manifest_path))
            continue
        if not file.is_file():
            raise DataError("table listed in the manifest is missing (the dataset is incomplete)", file=str(file))
        try:
            blob = file.read_bytes()
            df = pd.read_parquet(io.BytesIO(blob))
        except Exception as exc:  # pyarrow raises several types for missing / corrupt files
            raise DataError(f"cannot read table: {exc}", file=str(file)) from None
        if verify is True and fname in files and files[fname].get("content_sha256") == manifest["sha256"]:
            verified &= hashlib.sha256(blob).hexdigest() == files[fname]["sha256"]
        else:
            verified = False
        for optional in ("category", "group"):  # written by older versions without these columns
            if optional not in df.columns:
                df[optional] = None
        _check_table(df, table, file)
        tables[table] = df
    in_tables: list = []
    if tables["outcomes"] is not None:
        in_tables += list(pd.unique(tables["outcomes"]["model"]))
    if tables["preferences"] is not None:
        in_tables += list(pd.unique(pd.concat([tables["preferences"]["model_a"], tables["preferences"]["model_b"]])))
    if set(in_tables) != set(manifest["models"]):
        extra = sorted(set(map(str, in_tables)) - set(manifest["models"]))
        absent = sorted(set(manifest["models"]) - set(map(str, in_tables)))
        raise DataError(f"the manifest's models do not match the tables (only in the tables: {extra[:5]}, only in the "
                        f"manifest: {absent[:5]})", file=str(manifest_path))
    if verify:
        _verify_content(manifest, tables, path, fast=verified and verify is True, check_split=verify != "content")
    # after the content check: a table that changed is named as such; counts that differ from verified
    # tables mean the manifest was edited
    _check_counts(manifest, tables, manifest_path, check_split=verify != "content")
    return RoutingDataset(tables["outcomes"], tables["preferences"], manifest, path)


def _check_counts(manifest: dict, tables: dict, manifest_path: Path, check_split: bool = True) -> None:
    """The manifest's counts (prompts, models, rows, prompts per split, rows per model) are the tables'."""
    outcomes, preferences = tables["outcomes"], tables["preferences"]
    labels = _split_labels(outcomes, preferences)
    actual: dict = {"prompts": int(labels.index.nunique()), "models": len(manifest["models"]),
                    "outcomes": None if outcomes is None else int(len(outcomes)),
                    "preferences": None if preferences is None else int(len(preferences)),
                    "splits": {s: int((labels.groupby(level=0).first() == s).sum()) for s in SPLITS}}
    counts = manifest.get("counts") or {}
    if not check_split:
        del actual["splits"]
    for key, value in actual.items():
        if key in counts and value is not None and counts[key] != value:
            raise _bad_manifest(manifest_path, f"counts.{key} is {counts[key]!r} but the tables have {value!r}")
    per_model = manifest.get("per_model") or {}
    if outcomes is not None and per_model:
        n = outcomes.groupby("model").size()
        for model, entry in per_model.items():
            have = int(n.get(model, 0))
            if isinstance(entry, dict) and "n" in entry and entry["n"] != have:
                raise _bad_manifest(manifest_path, f"per_model[{model!r}].n is {entry['n']!r} but the outcomes table has {have}")


def _check_split_spec(manifest: dict, tables: dict, path: Path) -> None:
    """The table's split labels are the ones the manifest's split spec assigns (DataError naming a prompt)."""
    try:
        spec = SplitSpec(**(manifest.get("split") or {}))
    except (TypeError, UserError) as exc:
        raise DataError(f"invalid manifest: split {manifest.get('split')!r} is not a split spec ({exc})",
                        file=str(path / MANIFEST)) from None
    labels = _split_labels(tables["outcomes"], tables["preferences"]).groupby(level=0).first()
    expected = assign_splits(_prompt_table(tables["outcomes"], tables["preferences"]), spec).reindex(labels.index)
    differ = labels.index[(expected != labels).to_numpy()]
    if len(differ):
        pid = differ[0]
        raise DataError(f"{len(differ)} prompt(s) are in another split than the manifest's split spec {spec.to_dict()} "
                        f"puts them (e.g. {pid!r}: {labels[pid]} in the table, {expected[pid]} by the spec): the split "
                        "column or the spec was edited; re-split the dataset with `routerzoo data split`", file=str(path))


def _verify_content(manifest: dict, tables: dict, path: Path, *, fast: bool, check_split: bool) -> None:
    """Check the tables against the manifest's fingerprint; upgrade a version-1 fingerprint in memory.

    ``fast``: the table files' bytes matched the hashes recorded at save time, so the content part
    is not recomputed. ``check_split``: False when the split is about to be replaced (re-splitting).
    """
    outcomes, preferences = tables["outcomes"], tables["preferences"]
    names = ", ".join(TABLE_FILES[t] for t in manifest["tables"])
    modified = DataError(f"content does not match the manifest's sha256: {names} (or the manifest) was modified "
                         "after the dataset was written; re-import or re-split it", file=str(path))
    version = manifest.get("fingerprint_version", 1)
    if version == 1:
        # written before the fingerprint covered the split: its sha256 is the content's
        if not fast and content_fingerprint(outcomes, preferences) != manifest["sha256"]:
            raise modified
        if not fast and check_split:  # bytes changed: the split column is not vouched for by the file hashes
            _check_split_spec(manifest, tables, path)
        old = manifest["sha256"]
        _stamp(manifest, outcomes, preferences, content=old)
        manifest["notes"] = [*(manifest.get("notes") or []),
                             f"fingerprint upgraded to cover the split (written by an older routerzoo): sha256 "
                             f"{old[:12]}... is now {manifest['sha256'][:12]}... (content_sha256 keeps the old value); "
                             "`routerzoo data split` with the same flags rewrites the manifest"]
        return
    split = split_fingerprint(outcomes, preferences, manifest.get("split"))
    if fast and _combine(str(manifest.get("content_sha256")), split) == manifest["sha256"]:
        return
    content = content_fingerprint(outcomes, preferences)
    if content != manifest.get("content_sha256"):
        raise modified
    if check_split and _combine(content, split) != manifest["sha256"]:
        _check_split_spec(manifest, tables, path)  # names a relabelled prompt, when that is what happened
        raise modified  # labels and spec agree: the fingerprint itself (or spec and labels together) was edited


def resplit(dataset: RoutingDataset, spec: SplitSpec) -> RoutingDataset:
    """The same data with a new split assignment: ``content_sha256`` unchanged, a new ``sha256``."""
    labels = assign_splits(_prompt_table(dataset.outcomes, dataset.preferences), spec)
    outcomes = None if dataset.outcomes is None else dataset.outcomes.assign(split=dataset.outcomes["prompt_id"].map(labels).to_numpy())
    preferences = None if dataset.preferences is None else dataset.preferences.assign(split=dataset.preferences["prompt_id"].map(labels).to_numpy())
    manifest = dict(dataset.manifest, split=spec.to_dict())
    manifest["counts"] = dict(manifest.get("counts", {}), splits={s: int((labels == s).sum()) for s in SPLITS})
    # the content is unchanged (content_sha256 stays); the split, and so sha256, is new
    _stamp(manifest, outcomes, preferences, content=dataset.manifest.get("content_sha256")
           if dataset.manifest.get("fingerprint_version") == FINGERPRINT_VERSION else None)
    return RoutingDataset(outcomes, preferences, manifest, dataset.path)
