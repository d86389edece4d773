"""``long``: a generic outcomes table, one row per (prompt, model), in the canonical columns.

Input: CSV (``.csv`` / ``.tsv``), JSON Lines (``.jsonl``), a JSON list (``.json``) or Parquet
(``.parquet``) files, or directories holding them, with the columns

==================  ========  =====================================================================
column              required  meaning
==================  ========  =====================================================================
``prompt``          yes       the query text
``model``           yes       model name
``quality``         yes       a number in [0, 1] (correctness, normalised judge score, ...)
``prompt_id``       no        stable id; missing ids become the first 16 hex digits of sha256(prompt)
``cost``            no        USD for this model on this prompt
``input_tokens``    no        prompt tokens
``output_tokens``   no        completion tokens
``response``        no        the model's answer
``category``        no        task / subject
==================  ========  =====================================================================

Example (CSV)::

    prompt_id,prompt,model,quality,cost
    q1,What is 2+2?,gpt-4o-mini,1,0.00002
    q1,What is 2+2?,llama-3.1-8b,1,0.00001

Costs: a row without ``cost`` is costed as ``input_tokens`` × input price + ``output_tokens`` ×
output price, with prices from ``--prices FILE`` and then genai-prices; a missing
``input_tokens`` is counted from the prompt and a missing ``output_tokens`` from the response (0
without one) using cl100k_base. No price for such a row's model is an error naming the model.

Missing values follow the common rule (``routerzoo data formats`` intro; an empty CSV cell, a JSON
``null`` or absent key, a Parquet null, NaN): a missing ``prompt``, ``model`` or ``quality`` is an
error; a missing ``cost`` is computed from tokens as above, and the notes say how many rows (and
the first one) were costed that way, so an empty cost cell is never re-priced silently. A CSV whose
last row is cut short, or that does not end with a line break, is an error naming the row.

Other columns are ignored with a warning (``--strict``: an error); a near-miss of a column name
(``qualty``) is always an error. A quality outside [0, 1], a negative or infinite cost, a token count
that is not a whole number, a (prompt_id, model) pair repeated within a file or one prompt_id used
for two different texts is an error naming file, row (data records count from 1, the CSV header not
counted; JSONL rows are line numbers) and field.
"""

from __future__ import annotations

import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    check_columns,
    expand_paths,
    fill_costs,
    fill_prompt_ids,
    first_bad,
    is_missing,
    read_table,
    source_entry,
)
from routerzoo.data.prices import PriceTable
from routerzoo.data.schema import OUTCOME_COLUMNS
from routerzoo.data.tokens import tokenizer_name

NAME = "long"
SUMMARY = "generic CSV / JSONL / Parquet, one row per prompt x model, canonical outcome columns"
REQUIRED = ["prompt", "model", "quality"]
TEXT_COLUMNS = ["prompt_id", "prompt", "model", "response", "category"]
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def read_long_file(path, options: ImportOptions | None = None, notes: list | None = None) -> pd.DataFrame:
    """One long-format file, checked for columns and duplicates, with ``prompt_id`` filled in."""
    options = options or ImportOptions()
    file = str(path)
    df = read_table(path, text_columns=TEXT_COLUMNS, skip=options.skip, notes=notes)
    df = check_columns(df, file, REQUIRED, OUTCOME_COLUMNS, strict=options.strict, notes=notes)
    for col in ("prompt", "model"):
        first_bad(df, df[col].map(is_missing).to_numpy(dtype=bool), f"{col} is missing", col)
        first_bad(df, ~df[col].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool),
                  f"{col} must be text, got {{value!r}}", col)
    first_bad(df, df["quality"].map(is_missing).to_numpy(dtype=bool), "quality is missing", "quality")
    df = fill_prompt_ids(df)
    first_bad(df, df.duplicated(["prompt_id", "model"]).to_numpy(),
              "duplicate prompt_id {value!r} for the same model in this file", "prompt_id")
    return df


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, SUFFIXES, "outcome table (.csv / .jsonl / .json / .parquet)")
    parts, sources, extra = [], [], []
    for path in files:
        df = read_long_file(path, options, extra)
        parts.append(df)
        sources.append(source_entry(path, records=len(df)))
    df = pd.concat(parts, ignore_index=True)
    table = PriceTable(options.prices)
    notes = []
    if "cost" in df.columns:
        missing = df["cost"].map(is_missing).to_numpy(dtype=bool)
        if missing.any():
            i = int(missing.nonzero()[0][0])
            notes.append(f"{int(missing.sum())} row(s) have no cost (first: {df['_file'].iat[i]}, row {int(df['_row'].iat[i])}); "
                         f"costed as tokens x list price (missing token counts: {tokenizer_name()})")
    else:
        notes.append(f"no cost column: {len(df)} cost(s) computed as tokens x list price "
                     f"(missing token counts: {tokenizer_name()})")
    df = fill_costs(df, table)
    notes.insert(0, f"long: {len(df)} outcomes, {df['prompt_id'].nunique()} prompts, {df['model'].nunique()} models "
                    f"from {len(files)} file(s)")
    return ImportResult(outcomes=df, sources=sources, prices=table.used(), notes=notes + extra)
