"""``routerbench``: RouterBench's wide table (withmartian/routerbench), as CSV or Parquet.

Input: one row per prompt with the columns

- ``sample_id`` (unique id), ``prompt``, ``eval_name`` (the source benchmark, e.g. ``mmlu-astronomy``);
- for each model, a score column named by the model alone (``gpt-4-1106-preview``: 0/1, or a score
  in [0, 1]), ``<model>|model_response`` (its answer, optional) and ``<model>|total_cost`` (USD);
- optionally ``oracle_model_to_route_to`` (ignored: the oracle is recomputed from the outcomes).

Outcomes: ``prompt_id`` = ``sample_id``; ``category`` = ``eval_name``; ``quality`` = the score;
``cost`` = ``<model>|total_cost``; ``response`` = ``<model>|model_response``. A model without a
``|total_cost`` column is costed from token counts (prompt and response, cl100k_base) × its list
price (``--prices FILE``, then genai-prices), and is an error naming the model when no price is
known. An empty score cell (a missing value under the common rule) means the model was not run on that
prompt: the outcome is left out and counted in the notes. A score given without its cost (when the
model has a ``|total_cost`` column) is an error. A CSV row cut short, or a CSV that does not end with
a line break, is an error naming the row (never "empty scores, left out").

A ``sample_id`` used for two different prompts in one file (the published tables do this for a few
samples, each with some models' results) keeps the first prompt's id; the other prompt gets
``<sample_id>~2`` (``~3``, ...) and the notes count them. The same sample_id with the same prompt
twice is an error. Unknown ``<model>|<suffix>`` columns are ignored with a warning (``--strict``:
an error); a near-miss of a suffix (``|total_cots``) is always an error.

A ``prompt`` stored as a list of strings (RouterBench's pickles hold some prompts as lists) is
joined with blank lines.

The published RouterBench files are pickles (``.pkl``). Unpickling can run arbitrary code from
the file, so ``.pkl`` input is refused unless ``trust_pickle=True`` (``--trust-pickle``) is given,
and then a warning is printed. Converting once to Parquet avoids the flag::

    python -c "import pandas as pd; pd.read_pickle('routerbench_0shot.pkl').to_parquet('routerbench_0shot.parquet')"
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    expand_paths,
    fill_costs,
    first_bad,
    is_missing,
    near_miss,
    read_table,
    source_entry,
    unknown_names,
)
from routerzoo.data.prices import PriceTable
from routerzoo.data.tokens import tokenizer_name
from routerzoo.errors import DataError, UserError

NAME = "routerbench"
SUMMARY = "RouterBench wide table (CSV / Parquet; .pkl with trust_pickle): score, response, cost per model"
BASE = ("sample_id", "prompt", "eval_name")
OPTIONAL = ("oracle_model_to_route_to",)
SUFFIXES = ("model_response", "total_cost")


def _read_pickle(path: Path, trust: bool) -> pd.DataFrame:
    if not trust:
        raise UserError(
            f"{path} is a pickle: loading it runs code stored in the file. If you trust its source, pass "
            "--trust-pickle (trust_pickle=True), or convert it once to Parquet and import that")
    print(f"routerzoo: warning: unpickling {path} runs code from that file; only do this with files you trust",
          file=sys.stderr)
    try:
        df = pd.read_pickle(path)
    except Exception as exc:  # corrupt / truncated pickles raise many types
        raise DataError(f"cannot unpickle: {type(exc).__name__}: {exc}", file=str(path)) from None
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"the pickle holds a {type(df).__name__}, not a table", file=str(path))
    if len(df) == 0:
        raise DataError("no records (empty table)", file=str(path))
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    df["_row"] = np.arange(1, len(df) + 1)
    df["_file"] = str(path)
    return df


def _prompt_text(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return "\n\n".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            return "\n\n".join(parsed)
    return value


def _read_one(path: Path, options: ImportOptions, notes: list) -> tuple[pd.DataFrame, int, list[str]]:
    file = str(path)
    name = path.name.lower()
    if name.endswith((".pkl", ".pickle")):
        df = _read_pickle(path, options.trust_pickle)
        if options.skip:
            df = df[~df["_row"].map(lambda r: (file, int(r)) in options.skip).to_numpy(dtype=bool)].reset_index(drop=True)
    elif name.endswith((".csv", ".parquet", ".pq")):
        df = read_table(path, text_columns=lambda c: c in BASE or c.endswith("|model_response"),
                        skip=options.skip, notes=notes)
    else:
        raise DataError("format mismatch: routerbench reads its wide table as .csv, .parquet or .pkl", file=file)
    cols = [c for c in df.columns if c not in ("_file", "_row")]
    for c in BASE:
        if c not in cols:
            typo = next((x for x in cols if near_miss(x, [c])), None)
            hint = f"; did you mean {c!r} for column {typo!r}?" if typo else ""
            raise DataError(f"missing required column {c!r} (RouterBench tables have sample_id, prompt, eval_name "
                            f"and one score column per model){hint}", file=file, field=c)
    for c in cols:
        if "|" not in c and c not in BASE + OPTIONAL:
            guess = near_miss(c, BASE + OPTIONAL)
            if guess is not None:
                raise DataError(f"unknown column {c!r}: did you mean {guess!r}?", file=file, field=c)
    models = [c for c in cols if "|" not in c and c not in BASE + OPTIONAL]
    unknown = []
    for c in cols:
        if "|" in c:
            model, _, suffix = c.rpartition("|")
            if suffix not in SUFFIXES:
                guess = near_miss(suffix, SUFFIXES)
                if guess is not None:
                    raise DataError(f"unknown column {c!r}: did you mean {model + '|' + guess!r}?", file=file, field=c)
                unknown.append(c)
                continue
            if model not in models:
                raise DataError(f"column {c!r} has no score column {model!r}", file=file, field=c)
    unknown_names(unknown, [f"<model>|{x}" for x in SUFFIXES], file=file, what="column", strict=options.strict,
                  notes=notes)
    df = df.drop(columns=unknown)
    if not models:
        raise DataError("no model score columns", file=file)
    df["prompt"] = df["prompt"].map(_prompt_text)
    first_bad(df, df["sample_id"].map(is_missing).to_numpy(dtype=bool), "sample_id is missing", "sample_id")
    first_bad(df, df["prompt"].map(is_missing).to_numpy(dtype=bool), "prompt is missing", "prompt")
    first_bad(df, ~df["prompt"].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool),
              "prompt must be text, got {value!r}", "prompt")
    ids = df["sample_id"].astype(str)
    first_bad(df, df.assign(_id=ids).duplicated(["_id", "prompt"]).to_numpy(),
              "duplicate sample_id {value!r} with the same prompt in this file", "sample_id")
    rank = df.assign(_id=ids).groupby("_id", sort=False).cumcount().to_numpy()
    if (rank > 0).any():
        ids = pd.Series(np.where(rank > 0, ids + "~" + (rank + 1).astype(str), ids), index=df.index)
        first_bad(df, ids.duplicated().to_numpy(), "sample_id {value!r} clashes with a disambiguated id", "sample_id")
        notes.append(f"{int((rank > 0).sum())} sample_id(s) in {file} are reused for a different prompt; "
                     "those prompts get ids '<sample_id>~2', ...")
    parts = []
    missing = 0
    for model in models:
        raw = df[model]
        quality = pd.to_numeric(raw.map(lambda v: float(v) if isinstance(v, bool) else v), errors="coerce")
        first_bad(df, (quality.isna() & ~raw.map(is_missing)).to_numpy(dtype=bool),
                  f"score of {model!r} is not a number: {{value!r}}", model)
        first_bad(df, ((quality < 0) | (quality > 1)).to_numpy(), f"score of {model!r} {{value!r}} is outside [0, 1]", model)
        have = quality.notna().to_numpy()
        missing += int((~have).sum())
        cost_col = f"{model}|total_cost"
        resp_col = f"{model}|model_response"
        part = pd.DataFrame({
            "prompt_id": ids.to_numpy(),
            "prompt": df["prompt"].to_numpy(),
            "model": model,
            "quality": quality.to_numpy(dtype=np.float64),
            "cost": df[cost_col].to_numpy() if cost_col in df.columns else np.nan,
            "response": df[resp_col].to_numpy() if resp_col in df.columns else None,
            "category": df["eval_name"].to_numpy(),
            "_file": file,
            "_row": df["_row"].to_numpy(),
        })[have]
        if cost_col in df.columns:
            cost = pd.to_numeric(part["cost"], errors="coerce")
            bad = cost.isna().to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"missing or non-numeric cost {part['cost'].iat[i]!r}", file=file,
                                row=int(part["_row"].iat[i]), field=cost_col)
            part["cost"] = cost.to_numpy(dtype=np.float64)
        first_bad(part, ~part["response"].map(lambda v: is_missing(v) or isinstance(v, str)).to_numpy(dtype=bool),
                  "response must be text, got {value!r}", "response")
        part["response"] = part["response"].map(lambda v: None if is_missing(v) else v)
        parts.append(part)
    uncosted = [m for m in models if f"{m}|total_cost" not in df.columns]
    return pd.concat(parts, ignore_index=True), missing, uncosted


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, (".csv", ".parquet", ".pq", ".pkl"), "RouterBench table (.csv / .parquet / .pkl)")
    parts, sources, notes = [], [], []
    uncosted_all: set[str] = set()
    missing_total = 0
    extra: list[str] = []
    for path in files:
        df, missing, uncosted = _read_one(path, options, extra)
        parts.append(df)
        missing_total += missing
        uncosted_all |= set(uncosted)
        sources.append(source_entry(path, records=int(df["_row"].nunique())))
    df = pd.concat(parts, ignore_index=True)
    table = PriceTable(options.prices)
    if df["cost"].isna().any():
        df = fill_costs(df, table)
        notes.append(f"no |total_cost column for {sorted(uncosted_all)}: cost = tokens ({tokenizer_name()}) x list price")
    notes.insert(0, f"routerbench: {len(df)} outcomes, {df['prompt_id'].nunique()} prompts, {df['model'].nunique()} models "
                    f"from {len(files)} file(s)")
    if missing_total:
        notes.append(f"left out {missing_total} (prompt, model) pair(s) with an empty score")
    return ImportResult(outcomes=df, sources=sources, prices=table.used(), notes=notes + extra)
