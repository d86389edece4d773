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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.matrix import OutcomeMatrix, PreferenceMatrix
from routerzoo.data.schema import (
    OUTCOME_COLUMNS,
    PREFERENCE_COLUMNS,
    SPLITS,
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


def fingerprint(outcomes: pd.DataFrame | None, preferences: pd.DataFrame | None) -> str:
    """sha256 of the tables' content (not of the Parquet bytes, which embed writer versions).

    The split column is left out: the same data re-split keeps its fingerprint, and the manifest
    records the split separately.
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
        canon = canon.astype("object").where(canon.notna(), None).astype(str)
        h.update(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes())
    return h.hexdigest()


@dataclass
class RoutingDataset:
    """In-memory dataset: the canonical tables and the manifest."""

    outcomes: pd.DataFrame | None = None
    preferences: pd.DataFrame | None = None
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

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
        df = self.outcomes
        if split not in (None, "all"):
            if split not in SPLITS:
                raise UserError(f"unknown split {split!r}; choose one of {list(SPLITS)} or 'all'")
            df = df[df["split"] == split]
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
        df = self.preferences
        if split not in (None, "all"):
            if split not in SPLITS:
                raise UserError(f"unknown split {split!r}; choose one of {list(SPLITS)} or 'all'")
            df = df[df["split"] == split]
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
    """Validate tables, assign splits and build the manifest (nothing is written)."""
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
        "notes": notes or [],
        "sha256": fingerprint(outcomes, preferences),
    }
    return RoutingDataset(outcomes, preferences, manifest)


def save_dataset(dataset: RoutingDataset, out: str | os.PathLike) -> Path:
    """Write Parquet tables and ``dataset.json`` into directory ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for fname, df in ((OUTCOMES_FILE, dataset.outcomes), (PREFERENCES_FILE, dataset.preferences)):
        target = out / fname
        if df is None:
            target.unlink(missing_ok=True)
            continue
        tmp = out / f".{fname}.tmp"
        df.to_parquet(tmp, index=False)
        tmp.replace(target)
    (out / MANIFEST).write_text(json.dumps(dataset.manifest, indent=2) + "\n")
    dataset.path = out
    return out


def load_dataset(path: str | os.PathLike) -> RoutingDataset:
    """Read a dataset directory written by :func:`save_dataset`.

    Raises:
        UserError: when the directory, manifest or a table is missing or unreadable.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a routerzoo dataset: {MANIFEST} not found (create one with `routerzoo data import`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest is not valid JSON: {exc}", file=str(manifest_path)) from None
    if manifest.get("schema_version", 0) > SCHEMA_VERSION:
        raise UserError(f"{manifest_path} has schema version {manifest['schema_version']}; this routerzoo reads up to {SCHEMA_VERSION}")
    tables = {}
    for table, fname in (("outcomes", OUTCOMES_FILE), ("preferences", PREFERENCES_FILE)):
        if table not in manifest.get("tables", []):
            tables[table] = None
            continue
        try:
            df = pd.read_parquet(path / fname)
        except Exception as exc:  # pyarrow raises several types for missing / corrupt files
            raise DataError(f"cannot read table: {exc}", file=str(path / fname)) from None
        for optional in ("category", "group"):  # written by older versions without these columns
            if optional not in df.columns:
                df[optional] = None
        tables[table] = df
    return RoutingDataset(tables["outcomes"], tables["preferences"], manifest, path)


def resplit(dataset: RoutingDataset, spec: SplitSpec) -> RoutingDataset:
    """The same data with a new split assignment (fingerprint unchanged)."""
    labels = assign_splits(_prompt_table(dataset.outcomes, dataset.preferences), spec)
    outcomes = None if dataset.outcomes is None else dataset.outcomes.assign(split=dataset.outcomes["prompt_id"].map(labels).to_numpy())
    preferences = None if dataset.preferences is None else dataset.preferences.assign(split=dataset.preferences["prompt_id"].map(labels).to_numpy())
    manifest = dict(dataset.manifest, split=spec.to_dict())
    manifest["counts"] = dict(manifest.get("counts", {}), splits={s: int((labels == s).sum()) for s in SPLITS})
    return RoutingDataset(outcomes, preferences, manifest, dataset.path)
