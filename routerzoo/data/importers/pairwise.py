"""``pairwise``: preference pairs, one comparison per row (CSV, JSON Lines, JSON list or Parquet).

Columns: ``prompt``, ``model_a``, ``model_b``, ``winner`` (required) and ``prompt_id``,
``weight`` (> 0, default 1; missing = 1), ``category`` (optional). Other columns are ignored with a
warning (``--strict``: an error); a near-miss of a column name (``winer``) is always an error.
Missing values follow the common rule: a missing prompt, model or winner is an error. Example::

    prompt,model_a,model_b,winner
    Write a haiku about rain.,gpt-4o,llama-3.1-8b,model_a
    What is 17 * 23?,gpt-4o,llama-3.1-8b,tie

``winner`` accepts, case-insensitively: ``a`` / ``model_a`` (model_a won), ``b`` / ``model_b``,
and ``tie``, ``draw``, ``tie (bothbad)``, ``both_bad`` (Chatbot Arena's two kinds of tie). Any
other value is an error naming file, row and field. A missing ``prompt_id`` is the first 16 hex
digits of sha256(prompt); one prompt may have many comparisons.
"""

from __future__ import annotations

import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    check_columns,
    expand_paths,
    fill_prompt_ids,
    first_bad,
    is_missing,
    read_table,
    source_entry,
)
from routerzoo.data.schema import PREFERENCE_COLUMNS

NAME = "pairwise"
SUMMARY = "generic preference pairs: prompt, model_a, model_b, winner (CSV / JSONL / Parquet)"
REQUIRED = ["prompt", "model_a", "model_b", "winner"]
WINNER_ALIASES = {
    "a": "a", "model_a": "a", "model a": "a",
    "b": "b", "model_b": "b", "model b": "b",
    "tie": "tie", "draw": "tie", "tie (bothbad)": "tie", "tie(bothbad)": "tie", "tie_bothbad": "tie",
    "both_bad": "tie", "bothbad": "tie", "both bad": "tie",
}
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def normalise_winner(value) -> str | None:
    """``"a"``, ``"b"``, ``"tie"`` for an accepted spelling, else None."""
    if not isinstance(value, str):
        return None
    return WINNER_ALIASES.get(" ".join(value.strip().lower().split()))


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, SUFFIXES, "preference table (.csv / .jsonl / .json / .parquet)")
    parts, sources, extra = [], [], []
    for path in files:
        file = str(path)
        df = read_table(path, text_columns=["prompt_id", "prompt", "model_a", "model_b", "winner", "category"],
                        skip=options.skip, notes=extra)
        df = check_columns(df, file, REQUIRED, PREFERENCE_COLUMNS, strict=options.strict, notes=extra)
        for col in ("prompt", "model_a", "model_b"):
            first_bad(df, df[col].map(is_missing).to_numpy(dtype=bool), f"{col} is missing", col)
            first_bad(df, ~df[col].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool),
                      f"{col} must be text, got {{value!r}}", col)
        winners = df["winner"].map(normalise_winner)
        first_bad(df, winners.isna().to_numpy(),
                  "unknown winner {value!r}; use a / model_a, b / model_b, or tie / tie (bothbad)", "winner")
        df["winner"] = winners
        df = fill_prompt_ids(df)
        parts.append(df)
        sources.append(source_entry(path, records=len(df)))
    df = pd.concat(parts, ignore_index=True)
    counts = df["winner"].value_counts()
    notes = [f"pairwise: {len(df)} preference pairs over {df['prompt_id'].nunique()} prompts from {len(files)} file(s) "
             f"(a {int(counts.get('a', 0))}, b {int(counts.get('b', 0))}, tie {int(counts.get('tie', 0))})"]
    return ImportResult(preferences=df, sources=sources, notes=notes + extra)
