"""The two canonical tables every importer produces, and their validation.

Benchmark outcomes, one row per (prompt, model)::

    prompt_id  str     stable id of the prompt (unique per prompt text within a dataset)
    prompt     str     the query text the router sees
    model      str     candidate model name
    quality    float   in [0, 1]: correctness, a normalised judge score, ...
    cost       float   USD for this model answering this prompt (>= 0)
    response   str?    the model's answer, when known
    token_logprobs list[float]?  log-probabilities of the response's tokens (for deferral scorers)
    input_tokens  int?  prompt tokens, when known
    output_tokens int?  completion tokens, when known
    category   str?    task / subject, used for stratified splits and reports
    group      str?    prompts sharing a group always share a split (e.g. two turns of one
                       conversation, revised versions of one question)

Preference pairs, one row per comparison::

    prompt_id, prompt, model_a, model_b, winner in {"a", "b", "tie"}, weight (> 0, default 1)

Importers may add two private columns, ``_file`` and ``_row``, naming where each row came from;
validation uses them to point at the offending record and :func:`strip_private` drops them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from routerzoo.errors import DataError

OUTCOME_COLUMNS = [
    "prompt_id", "prompt", "model", "quality", "cost",
    "response", "input_tokens", "output_tokens", "category", "group", "token_logprobs",
]
OUTCOME_REQUIRED = ["prompt_id", "prompt", "model", "quality", "cost"]
PREFERENCE_COLUMNS = ["prompt_id", "prompt", "model_a", "model_b", "winner", "weight", "category", "group"]
PREFERENCE_REQUIRED = ["prompt_id", "prompt", "model_a", "model_b", "winner"]
WINNERS = ("a", "b", "tie")
SPLITS = ("train", "val", "test")
PRIVATE = ("_file", "_row")


def _show(value) -> str:
    """A value as the user wrote it (numpy scalars shown as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _where(df: pd.DataFrame, idx) -> dict:
    """File and row of record ``idx`` for a DataError, from the private columns when present."""
    out: dict = {}
    if "_file" in df.columns:
        out["file"] = df.at[idx, "_file"]
    if "_row" in df.columns and not pd.isna(df.at[idx, "_row"]):
        out["row"] = int(df.at[idx, "_row"])
    return out


def _check_columns(df: pd.DataFrame, required: list[str], known: list[str], what: str, source: str | None) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{what} table lacks required column(s) {missing}", file=source)
    unknown = [c for c in df.columns if c not in known and c not in PRIVATE and c != "split"]
    if unknown:
        raise DataError(f"{what} table has unknown column(s) {unknown}; expected {known}", file=source)


def _check_text(df: pd.DataFrame, col: str, allow_empty: bool = False) -> None:
    bad = df[col].isna() | ~df[col].map(lambda v: isinstance(v, str))
    if not allow_empty:
        bad |= df[col].map(lambda v: isinstance(v, str) and not v.strip())
    if bad.any():
        idx = df.index[bad.to_numpy()][0]
        raise DataError(f"must be a non-empty string, got {_show(df.at[idx, col])}", field=col, **_where(df, idx))


def _as_float(df: pd.DataFrame, col: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        idx = df.index[bad.to_numpy()][0]
        raise DataError(f"not a number: {_show(df.at[idx, col])}", field=col, **_where(df, idx))
    return values.astype("float64")


def _prepare(df: pd.DataFrame, required: list[str], known: list[str], what: str, source: str | None) -> pd.DataFrame:
    """Shared first steps: non-empty, known columns, a fresh 0..n-1 index, prompt ids as strings."""
    if len(df) == 0:
        raise DataError(f"no {what} records found (empty input)", file=source)
    _check_columns(df, required, known, f"{what}s", source)
    df = df.copy()
    df.index = pd.RangeIndex(len(df))
    df["prompt_id"] = df["prompt_id"].map(
        lambda v: v if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) else str(v))
    return df


def _check_one_text_per_id(df: pd.DataFrame) -> None:
    texts = df.groupby("prompt_id", sort=False)["prompt"].nunique()
    if (texts > 1).any():
        pid = texts.index[(texts > 1).to_numpy()][0]
        idx = df.index[(df["prompt_id"] == pid).to_numpy()][1]
        raise DataError(f"prompt_id {pid!r} is used for different prompt texts", field="prompt_id", **_where(df, idx))


def validate_outcomes(df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Check and normalise an outcomes table; returns a copy with canonical dtypes and column order.

    Raises:
        DataError: naming file, row and field of the first bad record.
    """
    df = _prepare(df, OUTCOME_REQUIRED, OUTCOME_COLUMNS, "outcome", source)
    for col in ("prompt_id", "prompt", "model"):
        _check_text(df, col)
    for col in ("quality", "cost"):
        values = _as_float(df, col)
        missing = values.isna() | ~np.isfinite(values.fillna(0.0))
        if missing.any():
            idx = df.index[missing.to_numpy()][0]
            raise DataError(f"missing or non-finite value {_show(df.at[idx, col])}", field=col, **_where(df, idx))
        df[col] = values
    out_of_range = (df["quality"] < 0) | (df["quality"] > 1)
    if out_of_range.any():
        idx = df.index[out_of_range.to_numpy()][0]
        raise DataError(f"quality {_show(df.at[idx, 'quality'])} is outside [0, 1]", field="quality", **_where(df, idx))
    negative = df["cost"] < 0
    if negative.any():
        idx = df.index[negative.to_numpy()][0]
        raise DataError(f"cost {_show(df.at[idx, 'cost'])} is negative", field="cost", **_where(df, idx))
    _optional_text(df, ("response", "category", "group"))
    for col in ("input_tokens", "output_tokens"):
        if col not in df.columns:
            df[col] = pd.NA
        raw = df[col].map(lambda v: np.nan if isinstance(v, bool) else v)
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = (values.isna() & df[col].notna()) | (values < 0) | ~np.isfinite(values.fillna(0.0)) | (values.notna() & (values != values.round()))
        if bad.any():
            idx = df.index[bad.to_numpy()][0]
            raise DataError(f"token count must be a non-negative whole number, got {_show(df.at[idx, col])}", field=col, **_where(df, idx))
        df[col] = values.astype("Int64")
    df["token_logprobs"] = _logprob_lists(df)
    dup = df.duplicated(["prompt_id", "model"], keep="first")
    if dup.any():
        idx = df.index[dup.to_numpy()][0]
        raise DataError(
            f"duplicate record for prompt_id {_show(df.at[idx, 'prompt_id'])} and model {_show(df.at[idx, 'model'])}",
            field="prompt_id", **_where(df, idx),
        )
    _check_one_text_per_id(df)
    return df[OUTCOME_COLUMNS + [c for c in ("split", *PRIVATE) if c in df.columns]]


def _optional_text(df: pd.DataFrame, cols) -> None:
    """Optional text columns, in place: missing -> None, numbers -> their text, anything else an error.

    (Mixed types, e.g. a category that is ``3`` in one JSON record and ``"math"`` in another, would
    otherwise fail when the table is written to Parquet.)
    """
    for col in cols:
        if col not in df.columns:
            df[col] = None
            continue

        def text(v):
            if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
                return None
            if isinstance(v, str):
                return v
            if isinstance(v, (bool, np.bool_)):
                return str(bool(v)).lower()
            if isinstance(v, (int, np.integer)):
                return str(int(v))
            if isinstance(v, (float, np.floating)) and math.isfinite(v):
                return repr(float(v))
            return _NOT_TEXT

        values = df[col].astype("object").map(text)
        bad = values.map(lambda v: v is _NOT_TEXT)
        if bad.any():
            idx = df.index[bad.to_numpy()][0]
            raise DataError(f"must be text, got {_show(df.at[idx, col])[:80]}", field=col, **_where(df, idx))
        df[col] = values.astype("object")


_NOT_TEXT = object()


def _logprob_lists(df: pd.DataFrame) -> pd.Series:
    """The optional ``token_logprobs`` column as lists of floats (None where absent).

    Each value must be a sequence of finite numbers <= 0 (natural-log probabilities).
    """
    if "token_logprobs" not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    out = []
    for idx, value in df["token_logprobs"].items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(None)
            continue
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"must be a list of token log-probabilities, got {_show(value)[:80]}",
                            field="token_logprobs", **_where(df, idx)) from None
        if not np.isfinite(arr).all() or (arr > 1e-6).any():
            raise DataError("token log-probabilities must be finite numbers <= 0", field="token_logprobs", **_where(df, idx))
        out.append(arr.tolist())
    return pd.Series(out, index=df.index, dtype=object)


def validate_preferences(df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Check and normalise a preference table; returns a copy with canonical dtypes and column order.

    Raises:
        DataError: naming file, row and field of the first bad record.
    """
    df = _prepare(df, PREFERENCE_REQUIRED, PREFERENCE_COLUMNS, "preference", source)
    for col in ("prompt_id", "prompt", "model_a", "model_b"):
        _check_text(df, col)
    winners = df["winner"].map(lambda v: str(v).strip().lower() if isinstance(v, str) else v)
    bad = ~winners.isin(WINNERS)
    if bad.any():
        idx = df.index[bad.to_numpy()][0]
        raise DataError(f"winner must be one of {list(WINNERS)}, got {_show(df.at[idx, 'winner'])}", field="winner", **_where(df, idx))
    df["winner"] = winners
    same = df["model_a"] == df["model_b"]
    if same.any():
        idx = df.index[same.to_numpy()][0]
        raise DataError(f"model_a and model_b are both {_show(df.at[idx, 'model_a'])}", field="model_b", **_where(df, idx))
    if "weight" not in df.columns:
        df["weight"] = 1.0
    weight = _as_float(df, "weight").fillna(1.0)
    bad = (weight <= 0) | ~np.isfinite(weight)
    if bad.any():
        idx = df.index[bad.to_numpy()][0]
        raise DataError(f"weight must be a positive number, got {_show(df.at[idx, 'weight'])}", field="weight", **_where(df, idx))
    df["weight"] = weight
    _optional_text(df, ("category", "group"))
    _check_one_text_per_id(df)
    return df[PREFERENCE_COLUMNS + [c for c in ("split", *PRIVATE) if c in df.columns]]


def strip_private(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the ``_file`` / ``_row`` provenance columns."""
    return df.drop(columns=[c for c in PRIVATE if c in df.columns])
