"""Shared helpers of the importers: finding files, reading them safely, stable ids, results.

Rules every format follows (the format docs refer to them):

Missing values
    A value is *missing* when its JSON key is absent or ``null``, its CSV cell is empty, its Parquet
    cell is null, or it is a float NaN; an empty or all-blank string in a text field is missing too.
    (The CSV text ``NA`` / ``null`` / ``NaN`` is text, not a missing value.) A missing *required*
    value (prompt, model, quality, ...) is an error naming file, row and field; a missing optional
    value is simply absent, and where the format gives absence a meaning (a model not run on a
    prompt, a cost to compute from tokens) the records concerned are counted in the manifest notes.
    Infinite numbers are always errors.

Structure
    A file whose structure is broken is always an error, never skipped: invalid or truncated JSON,
    a CSV row with more or fewer fields than the header, a CSV whose last row is not ended by a
    line break (a cut-short file looks exactly like that), a quoted CSV field that is never closed,
    a header naming a column twice.

Unknown columns and fields
    Ignored with a warning naming them (``strict=True`` / ``--strict`` makes them errors), except a
    near-miss of a known name (``qualty``), which is always an error saying ``did you mean
    'quality'?``. A leading pandas index column (no header name, values 0..n-1) is dropped with a note.

Invalid records
    By default the first invalid value stops the import with a :class:`~routerzoo.errors.DataError`.
    With ``on_invalid="skip"`` (``--on-invalid skip``) records with invalid values are left out, each
    listed in a rejects table (file, row, field, reason) and counted in the notes; structure errors
    still stop the import.
"""

from __future__ import annotations

import ast
import csv
import difflib
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.fsutil import file_sha256  # noqa: F401  (importers record their sources' hashes)
from routerzoo.data.prices import PriceTable
from routerzoo.data.tokens import count_tokens
from routerzoo.errors import DataError, UserError

ON_INVALID = ("error", "skip")


class StructureError(DataError):
    """A file whose structure is broken (truncated, wrong field count, bad JSON): never skipped."""


@dataclass
class ImportOptions:
    """What the user passed besides the files.

    Attributes:
        prices: price file consulted first.
        trust_pickle: allow ``.pkl`` input (RouterBench).
        strict: unknown columns / fields are errors instead of warnings.
        skip: ``(file, row)`` records to leave out (filled by ``on_invalid="skip"``).
    """

    prices: str | os.PathLike | None = None
    trust_pickle: bool = False
    strict: bool = False
    skip: frozenset = frozenset()


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


def source_entry(path: Path, **extra) -> dict:
    """Manifest ``sources`` entry of an input file: path, size, sha256, plus ``extra``."""
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path), **extra}


def read_records(files: list[Path], parse, *, suffixes: tuple[str, ...], reads: str, skipped: str, empty: str,
                 sources: list, notes: list) -> list[dict]:
    """What every record-by-record importer does: check each file's suffix, read its JSON objects,
    turn each into a row, count and note what was skipped, refuse a file that gave no row, and list
    each file among the sources with its count.

    Args:
        files: the files to read.
        parse: ``parse(rec, file, row, seen) -> dict | None``: one record's row, or None to skip it
            (counted); ``seen`` is a set per file for the importer's duplicate check.
        suffixes: file name endings accepted (lower case).
        reads: what the importer reads, for the format mismatch error ("alpaca-eval reads ...").
        skipped: note when records were skipped, formatted with ``{n}`` and ``{file}``.
        empty: error for a file that gave no row.

    Returns:
        The rows, each with ``_file`` and ``_row`` (where it came from) added last.
    """
    rows = []
    for path in files:
        file = str(path)
        if not path.name.lower().endswith(suffixes):
            raise DataError(f"format mismatch: {reads}, not a {path.suffix or 'suffix-less'} file", file=file)
        seen: set[str] = set()
        n = n_skipped = 0
        for row, rec in read_json_objects(path):
            out = parse(rec, file, row, seen)
            if out is None:
                n_skipped += 1
                continue
            rows.append({**out, "_file": file, "_row": row})
            n += 1
        if n_skipped:
            notes.append(skipped.format(n=n_skipped, file=file))
        if n == 0:
            raise DataError(empty, file=file)
        sources.append(source_entry(path, records=n))
    return rows


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
        raise StructureError(f"invalid or truncated JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                             file=file, row=exc.lineno) from None
    except RecursionError:
        raise StructureError("JSON nested too deeply", file=file) from None


def read_json_records(path: Path, skip: frozenset = frozenset()) -> list[tuple[int, object]]:
    """Records of a ``.json`` (a list, or one object) or ``.jsonl`` file as ``(row, value)``.

    ``row`` is the 1-based record number for JSON and the line number for JSONL; records whose
    ``(str(path), row)`` is in ``skip`` are left out.
    """
    out = _read_json_records(path)
    if skip:
        out = [(row, rec) for row, rec in out if (str(path), row) not in skip]
    return out


def read_json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """:func:`read_json_records` of a file whose every record must be a JSON object."""
    for row, rec in read_json_records(path):
        if not isinstance(rec, dict):
            raise DataError(f"expected a JSON object, got {str(rec)[:60]!r}", file=str(path), row=row)
        yield row, rec


def _read_json_records(path: Path) -> list[tuple[int, object]]:
    text = read_text(path)
    if path.name.lower().endswith((".jsonl", ".ndjson")):
        out = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise StructureError(f"invalid or truncated JSON on this line (column {exc.colno}): {exc.msg}",
                                     file=str(path), row=lineno) from None
            except RecursionError:
                raise StructureError("JSON nested too deeply", file=str(path), row=lineno) from None
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


#: the longest CSV field read (characters): 2**31 - 1, the csv module's largest on every platform
CSV_FIELD_LIMIT = 2**31 - 1


def _csv_header(raw: str, sep: str, file: str) -> list[str]:
    """Check a CSV's structure; returns its header.

    Every data record must have as many fields as the header, no column may be named twice, quoted
    fields must be closed and the file must end with a line break (or a closed quote): a file cut
    short in its last row fails here instead of importing a shortened value.
    """
    # the csv module refuses fields over 128 KiB by default; a long prompt or response is valid CSV
    # (pandas, which reads the values, has no such limit)
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=sep, strict=True)
    header: list[str] | None = None
    row = 0
    try:
        for record in reader:
            if not record:
                continue
            if header is None:
                header = record
                seen: set[str] = set()
                other = next((c for c in (";", "\t", "|") if c != sep and len(header) == 1 and c in header[0]), None)
                if other is not None:
                    named = {";": "semicolon", "\t": "tab", "|": "pipe"}[other]
                    hint = "name it .tsv" if other == "\t" else f"save it with {'commas' if sep == ',' else 'tabs'}"
                    raise StructureError(f"the header is one column holding {other!r}: the file looks {named}-separated, "
                                         f"but a {Path(file).suffix or 'CSV'} file is read as "
                                         f"{'comma' if sep == ',' else 'tab'}-separated; {hint}", file=file)
                for name in header:
                    if name in seen and name != "":
                        raise StructureError(f"column {name!r} appears twice in the header", file=file, field=name)
                    seen.add(name)
                continue
            row += 1
            if len(record) != len(header):
                raise StructureError(
                    f"has {len(record)} field(s) but the header has {len(header)}"
                    + (" (the row is cut short: is the file truncated?)" if len(record) < len(header) else ""),
                    file=file, row=row)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise StructureError(f"a field is longer than {CSV_FIELD_LIMIT} characters", file=file,
                                 row=row + 1 if header is not None else None) from None
        raise StructureError(f"cannot parse CSV ({exc}): a quoted field is not closed (is the file truncated?)",
                             file=file, row=row + 1 if header is not None else None) from None
    if header is None:
        raise DataError("file is empty", file=file)
    if row and not raw.endswith(("\n", "\r", '"')):
        raise StructureError("the file ends in the middle of this row (no line break after it): it may be cut "
                             "short; if the row is complete, end the file with a newline", file=file, row=row)
    return header


def _drop_index_column(df: pd.DataFrame, file: str, notes: list | None) -> pd.DataFrame:
    """Drop a leading pandas index column (no header name, values 0..n-1) with a note."""
    first = df.columns[0] if len(df.columns) else None
    if first is None or not str(first).startswith("Unnamed: "):
        return df
    values = pd.to_numeric(df[first], errors="coerce")
    if values.notna().all() and np.array_equal(values.to_numpy(), np.arange(len(df))):
        if notes is not None:
            notes.append(f"dropped the unnamed index column (values 0..{len(df) - 1}) of {file}")
        return df.drop(columns=[first])
    return df


def read_table(path: Path, text_columns: Iterable[str] | Callable[[str], bool] = (), *, skip: frozenset = frozenset(),
               notes: list | None = None) -> pd.DataFrame:
    """A CSV / TSV / JSON / JSONL / Parquet file as a DataFrame with ``_file`` and ``_row`` columns.

    CSV rows count data records from 1 (the header line is not counted); JSONL rows are line numbers.
    Only empty cells are missing values in CSV (the text "NA" or "null" stays text); the columns in
    ``text_columns`` are read as strings. The CSV structure is checked first (see the module
    docstring); a Parquet index that has a name (e.g. ``prompt_id``) becomes a column. Records whose
    ``(file, row)`` is in ``skip`` are left out; ``notes`` receives what was tolerated.
    """
    name = path.name.lower()
    file = str(path)
    if name.endswith((".csv", ".tsv", ".txt")):
        raw = read_text(path)
        sep = "\t" if name.endswith(".tsv") else ","
        header = _csv_header(raw, sep, file)
        try:
            is_text = text_columns if callable(text_columns) else set(text_columns).__contains__
            dtype = {c: "object" for c in header if is_text(c)}
            df = pd.read_csv(io.StringIO(raw), sep=sep, dtype=dtype, keep_default_na=False, na_values=[""],
                             index_col=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
            raise StructureError(f"cannot parse CSV: {exc}", file=file) from None
        if len(df) == 0:
            raise DataError("no records (the CSV has a header but no rows)", file=file)
        df = _drop_index_column(df, file, notes)
        unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ")]
        if unnamed:
            raise DataError(f"CSV has {len(unnamed)} column(s) without a header name", file=file, field=str(unnamed[0]))
        df["_row"] = np.arange(1, len(df) + 1)
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        records = _read_json_records(path)
        rows = []
        for row, rec in records:
            if not isinstance(rec, dict):
                raise StructureError(f"expected a JSON object, got {type(rec).__name__} {str(rec)[:60]!r}", file=file, row=row)
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
            raise StructureError(f"cannot read Parquet: {exc}", file=file) from None
        if len(df) == 0:
            raise DataError("no records (empty Parquet table)", file=file)
        named = [n for n in df.index.names if n is not None]
        if named:
            clash = [n for n in named if n in df.columns]
            if clash:
                raise DataError(f"the Parquet index and a column are both named {clash[0]!r}", file=file, field=str(clash[0]))
            df = df.reset_index()
        else:
            if not isinstance(df.index, pd.RangeIndex) and notes is not None:
                notes.append(f"dropped the unnamed index of {file}")
            df = df.reset_index(drop=True)
        df["_row"] = np.arange(1, len(df) + 1)
    else:
        raise DataError("unsupported file type: expected .csv, .tsv, .jsonl, .json or .parquet", file=file)
    df.columns = [str(c) for c in df.columns]
    df["_file"] = file
    if skip:
        keep = ~df["_row"].map(lambda r: (file, int(r)) in skip).to_numpy(dtype=bool)
        df = df.loc[keep].reset_index(drop=True)
        if len(df) == 0:
            raise DataError("every record of this file is invalid", file=file)
    return df


def near_miss(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is most likely a typo of (``qualty`` -> ``quality``), or None."""
    if name in known:
        return None
    match = difflib.get_close_matches(name.strip().lower(), list(known), n=1, cutoff=0.75)
    return match[0] if match else None


def unknown_names(unknown: list[str], known: Iterable[str], *, file: str, what: str, strict: bool,
                  notes: list | None, row: int | None = None) -> None:
    """Policy for unknown columns / fields: near-miss -> error, strict -> error, else a warning note."""
    if not unknown:
        return
    known = list(known)
    for name in unknown:
        guess = near_miss(name, known)
        if guess is not None:
            raise DataError(f"unknown {what} {name!r}: did you mean {guess!r}?", file=file, row=row, field=name)
    if strict:
        raise DataError(f"unknown {what} {unknown[0]!r}; expected {what}s {known} (without --strict, unknown "
                        f"{what}s are ignored with a warning)", file=file, row=row, field=unknown[0])
    if notes is not None:
        msg = f"warning: ignored unknown {what}(s) {unknown} in {file} (--strict makes this an error)"
        if msg not in notes:
            notes.append(msg)


def check_columns(df: pd.DataFrame, file: str, required: Iterable[str], known: Iterable[str], *,
                  strict: bool = False, notes: list | None = None) -> pd.DataFrame:
    """Check a table's columns; returns it without ignored unknown columns.

    A missing required column, or an unknown column that is a near-miss of a known one, is a
    DataError naming it; other unknown columns are dropped with a warning in ``notes`` (errors
    when ``strict``).
    """
    cols = [c for c in df.columns if c not in ("_file", "_row")]
    known = list(known)
    unknown = [c for c in cols if c not in known]
    missing = [c for c in required if c not in cols]
    if missing:
        typo = next((c for c in unknown if near_miss(c, [missing[0]])), None)
        hint = f"; did you mean {missing[0]!r} for column {typo!r}?" if typo else ""
        raise DataError(f"missing required column {missing[0]!r} (has {cols}){hint}", file=file, field=missing[0])
    unknown_names(unknown, known, file=file, what="column", strict=strict, notes=notes)
    return df.drop(columns=unknown)


def is_missing(value) -> bool:
    """The missing-value rule: None, NaN / NA, or a blank string."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    if isinstance(value, str):
        return not value.strip()
    return False


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
