"""Shared helpers of the importers: finding files, reading them safely, stable ids, results."""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.prices import PriceTable
from routerzoo.data.tokens import count_tokens
from routerzoo.errors import DataError, UserError


@dataclass
class ImportOptions:
    """What the user passed besides the files."""

    prices: str | os.PathLike | None = None
    trust_pickle: bool = False


@dataclass
class ImportResult:
    """A format reader's output: canonical tables (with ``_file`` / ``_row``) plus provenance."""

    outcomes: pd.DataFrame | None = None
    preferences: pd.DataFrame | None = None
    sources: list[dict] = field(default_factory=list)
    prices: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# files


def expand_paths(paths: Iterable[str | os.PathLike], suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files named by ``paths``; directories are walked for files ending in ``suffixes``.

    Explicit files are kept whatever their suffix (the reader then reports a format mismatch).

    Raises:
        UserError: a path does not exist, or no file was found.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(suffixes))
            if not found:
                raise UserError(f"{p} is a directory without {what} files (looked for {', '.join('*' + s for s in suffixes)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or directory")
    if not out:
        raise UserError(f"no input files given (expected {what})")
    return list(dict.fromkeys(out))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_entry(path: Path, **extra) -> dict:
    """Manifest ``sources`` entry of an input file: path, size, sha256, plus ``extra``."""
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path), **extra}


def check_not_empty(path: Path, data: bytes | str) -> None:
    if not (data.strip() if isinstance(data, (bytes, str)) else data):
        raise DataError("file is empty", file=str(path))


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", file=str(path)) from None
    check_not_empty(path, raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start}): is this the right file and format?", file=str(path)) from None


def parse_json_document(text: str, file: str):
    """``json.loads`` with a DataError naming line and column on failure (truncated / corrupt JSON)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid or truncated JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                        file=file, row=exc.lineno) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", file=file) from None


def read_json_records(path: Path) -> list[tuple[int, object]]:
    """Records of a ``.json`` (a list, or one object) or ``.jsonl`` file as ``(row, value)``.

    ``row`` is the 1-based record number for JSON and the line number for JSONL.
    """
    text = read_text(path)
    if path.name.lower().endswith((".jsonl", ".ndjson")):
        out = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid or truncated JSON on this line (column {exc.colno}): {exc.msg}",
                                file=str(path), row=lineno) from None
        if not out:
            raise DataError("file is empty", file=str(path))
        return out
    data = parse_json_document(text, str(path))
    if isinstance(data, dict):
        for key in ("data", "records", "rows"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of records, got {type(data).__name__}", file=str(path))
    if not data:
        raise DataError("no records (empty JSON list)", file=str(path))
    return list(enumerate(data, start=1))


def read_table(path: Path, text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV / TSV / JSON / JSONL / Parquet file as a DataFrame with ``_file`` and ``_row`` columns.

    CSV rows count data records from 1 (the header line is not counted); JSONL rows are line numbers.
    Only empty cells are missing values in CSV (the text "NA" or "null" stays text); the columns in
    ``text_columns`` are read as strings.
    """
    name = path.name.lower()
    file = str(path)
    if name.endswith((".csv", ".tsv", ".txt")):
        raw = read_text(path)
        try:
            header = pd.read_csv(io.StringIO(raw), sep="\t" if name.endswith(".tsv") else ",", nrows=0).columns
            dtype = {c: "object" for c in text_columns if c in header}
            df = pd.read_csv(io.StringIO(raw), sep="\t" if name.endswith(".tsv") else ",", dtype=dtype,
                             keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
            raise DataError(f"cannot parse CSV: {exc}", file=file) from None
        if len(df) == 0:
            raise DataError("no records (the CSV has a header but no rows)", file=file)
        unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
        if unnamed:
            raise DataError(f"CSV has {len(unnamed)} column(s) without a header name", file=file, field=str(unnamed[0]))
        df["_row"] = np.arange(1, len(df) + 1)
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        records = read_json_records(path)
        rows = []
        for row, rec in records:
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__} {str(rec)[:60]!r}", file=file, row=row)
            rows.append(rec)
        df = pd.DataFrame(rows)
        df["_row"] = [r for r, _ in records]
    elif name.endswith((".parquet", ".pq")):
        try:
            if path.stat().st_size == 0:
                raise DataError("file is empty", file=file)
            df = pd.read_parquet(path)
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for corrupt files
            raise DataError(f"cannot read Parquet: {exc}", file=file) from None
        if len(df) == 0:
            raise DataError("no records (empty Parquet table)", file=file)
        df = df.reset_index(drop=True)
        df["_row"] = np.arange(1, len(df) + 1)
    else:
        raise DataError("unsupported file type: expected .csv, .tsv, .jsonl, .json or .parquet", file=file)
    df.columns = [str(c) for c in df.columns]
    df["_file"] = file
    return df


def check_columns(df: pd.DataFrame, file: str, required: Iterable[str], known: Iterable[str]) -> None:
    """DataError naming the first missing or unknown column."""
    cols = [c for c in df.columns if c not in ("_file", "_row")]
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(f"missing required column {missing[0]!r} (has {cols})", file=file, field=missing[0])
    known = list(known)
    unknown = [c for c in cols if c not in known]
    if unknown:
        raise DataError(f"unknown column {unknown[0]!r}; expected columns {known}", file=file, field=unknown[0])


def first_bad(df: pd.DataFrame, mask, message: str, field: str):
    """Raise a DataError for the first row where ``mask`` is true (no-op when none is)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise DataError(message.format(value=df[field].iloc[i] if field in df.columns else None),
                        file=str(df["_file"].iloc[i]), row=int(df["_row"].iloc[i]), field=field)


# ---------------------------------------------------------------------------------------------
# values


def text_id(text: str, prefix: str | None = None, length: int = 16) -> str:
    """A stable id from prompt text: sha256 of the UTF-8 text, hex, truncated; optional prefix."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
    return f"{prefix}-{digest}" if prefix else digest


def hash_ids(prompts: pd.Series, prefix: str | None = None) -> pd.Series:
    """:func:`text_id` for each prompt (each distinct text hashed once)."""
    codes, uniques = pd.factorize(prompts.astype(str), sort=False)
    ids = np.array([text_id(t, prefix) for t in uniques], dtype=object)
    return pd.Series(ids[codes], index=prompts.index)


def fill_prompt_ids(df: pd.DataFrame) -> pd.DataFrame:
    """Keep given ``prompt_id`` values; blank or missing ones become a hash of the prompt text."""
    ids = hash_ids(df["prompt"].astype(str))
    if "prompt_id" not in df.columns:
        return df.assign(prompt_id=ids)
    given = df["prompt_id"].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" else str(v))
    return df.assign(prompt_id=given.where(given.notna(), ids))


def parse_object(value, *, file: str, row: int | None, field: str, kind=dict):
    """A JSON object / list given as such, as a JSON string, or as a Python-literal string.

    Python reprs are parsed with :func:`ast.literal_eval` (never ``eval``).
    """
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, kind):
                return parsed
    raise DataError(f"expected a {'JSON object' if kind is dict else kind.__name__} (or its JSON / Python text), "
                    f"got {str(value)[:80]!r}", file=file, row=row, field=field)


def as_number(value, *, file: str, row: int | None, field: str, allow_none: bool = False) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if allow_none:
            return None
        raise DataError("missing value", file=file, row=row, field=field)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise DataError(f"not a number: {str(value)[:80]!r}", file=file, row=row, field=field)


def _numeric_column(df: pd.DataFrame, col: str) -> pd.Series:
    """``df[col]`` as float (NaN where missing); DataError naming the first non-numeric value."""
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    first_bad(df, (values.isna() & raw.notna()).to_numpy(), f"{col} is not a number: {{value!r}}", col)
    return values


def fill_costs(df: pd.DataFrame, table: PriceTable) -> pd.DataFrame:
    """Fill missing ``cost`` (USD) from token counts × the model's price.

    Where a row needs a price, a missing ``input_tokens`` is counted from its prompt and a missing
    ``output_tokens`` from its response (0 when there is no response). Rows with a cost keep it.

    Raises:
        UserError: naming the model, when a row needs a price and none is known.
        DataError: a cost or token count is not a number.
    """
    df = df.copy()
    cost = _numeric_column(df, "cost")
    tokens = {c: _numeric_column(df, c) for c in ("input_tokens", "output_tokens")}
    need = cost.isna().to_numpy()
    if need.any():
        for m in pd.unique(df["model"].to_numpy()[need]):
            table.get(m)  # fail early, naming the model
        for col, text_col in (("input_tokens", "prompt"), ("output_tokens", "response")):
            fill = need & tokens[col].isna().to_numpy()
            if fill.any():
                texts = df[text_col].to_numpy()[fill] if text_col in df.columns else [None] * int(fill.sum())
                values = tokens[col].to_numpy().copy()
                values[fill] = count_tokens(list(texts))
                tokens[col] = pd.Series(values, index=df.index)
        models = df["model"].to_numpy()
        new = cost.to_numpy().copy()
        for m in pd.unique(models[need]):
            sel = need & (models == m)
            new[sel] = table.get(m).cost(tokens["input_tokens"].to_numpy()[sel], tokens["output_tokens"].to_numpy()[sel])
        cost = pd.Series(new, index=df.index)
    df["cost"] = cost
    for col, values in tokens.items():
        if col in df.columns or values.notna().any():
            df[col] = values
    return df
