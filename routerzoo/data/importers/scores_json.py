"""``scores-json``: one record per question with a score for each model (JSON list or JSON Lines).

Input: ``.json`` files holding a list of records, or ``.jsonl`` files with one record per line::

    {"id": "q17", "question": "What is the capital of Australia?", "category": "geography",
     "scores": {"gpt-4o": 1.0, "llama-3.1-8b": 0.0},
     "costs": {"gpt-4o": 0.0021, "llama-3.1-8b": 0.00004},
     "tokens": {"gpt-4o": {"input": 12, "output": 40}, "llama-3.1-8b": [12, 55]},
     "responses": {"gpt-4o": "Canberra.", "llama-3.1-8b": "Sydney."}}

Required: ``question`` (the prompt) and ``scores`` (model -> number in [0, 1]; a null score means
the model was not run and is left out; a ``NaN`` score, cost or token count is an error naming the
record, never read as missing). Optional: ``id`` (default: first 16 hex digits of
sha256(question)), ``category``, ``costs`` (model -> USD), ``tokens`` (model -> ``{"input": n,
"output": n}`` or ``[input, output]``), ``responses`` (model -> answer text). Other keys are
errors.

Costs: ``costs[model]`` when given; otherwise tokens × the model's list price (``--prices FILE``,
then genai-prices), where input tokens default to the question's token count and output tokens to
the response's (cl100k_base), or 0 when neither ``tokens`` nor ``responses`` has them (the notes
count such input-only costs). A model with neither a cost nor a known price is an error naming it.
An ``id`` repeated within a file is an error naming file, row and field.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    as_number,
    expand_paths,
    fill_costs,
    read_json_objects,
    source_entry,
    text_id,
)
from routerzoo.data.prices import PriceTable
from routerzoo.data.tokens import tokenizer_name
from routerzoo.errors import DataError

NAME = "scores-json"
SUMMARY = "JSON / JSONL records {question, scores: {model: score}, costs?, tokens?, responses?}"
KEYS = ("id", "question", "category", "scores", "costs", "tokens", "responses")


def _no_nan(value, what: str, instead: str, file: str, row: int, field: str) -> None:
    """A JSON ``NaN`` literal is refused: read as "missing" it would silently drop a score or re-price a cost."""
    if isinstance(value, float) and math.isnan(value):
        raise DataError(f"{what} is NaN; write {instead}", file=file, row=row, field=field)


def _mapping(rec: dict, key: str, file: str, row: int) -> dict:
    value = rec.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{key} must be an object mapping model names to values", file=file, row=row, field=key)
    return value


def _tokens(value, file: str, row: int, field: str) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in ("input", "output", "input_tokens", "output_tokens")]
        if unknown:
            raise DataError(f"unknown key {unknown[0]!r}; expected input and output", file=file, row=row, field=f"{field}.{unknown[0]}")
        tin = value.get("input", value.get("input_tokens"))
        tout = value.get("output", value.get("output_tokens"))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        tin, tout = value
    else:
        raise DataError("tokens must be {\"input\": n, \"output\": n} or [input, output]", file=file, row=row, field=field)
    out = []
    for v, part in ((tin, "input"), (tout, "output")):
        _no_nan(v, "token count", "leave it out to count it from the text", file, row, f"{field}.{part}")
        v = as_number(v, file=file, row=row, field=f"{field}.{part}", allow_none=True)
        if v is not None and v < 0:
            raise DataError(f"token count must be >= 0, got {v!r}", file=file, row=row, field=f"{field}.{part}")
        out.append(v)
    return out[0], out[1]


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, (".json", ".jsonl", ".ndjson"), "scores JSON (.json / .jsonl)")
    rows, sources = [], []
    for path in files:
        file = str(path)
        if not path.name.lower().endswith((".json", ".jsonl", ".ndjson")):
            raise DataError("format mismatch: scores-json reads .json (a list of records) or .jsonl files", file=file)
        seen: set[str] = set()
        n = 0
        for row, rec in read_json_objects(path):
            unknown = [k for k in rec if k not in KEYS]
            if unknown:
                raise DataError(f"unknown field {unknown[0]!r}; expected {list(KEYS)}", file=file, row=row, field=unknown[0])
            question = rec.get("question")
            if not isinstance(question, str) or not question.strip():
                raise DataError("question must be a non-empty string", file=file, row=row, field="question")
            scores = rec.get("scores")
            if not isinstance(scores, dict) or not scores:
                raise DataError("scores must be a non-empty object mapping model names to numbers", file=file, row=row, field="scores")
            pid = rec.get("id")
            pid = text_id(question) if pid is None or str(pid).strip() == "" else str(pid)
            if pid in seen:
                raise DataError(f"id {pid!r} appears twice in this file", file=file, row=row, field="id")
            seen.add(pid)
            costs = _mapping(rec, "costs", file, row)
            tokens = _mapping(rec, "tokens", file, row)
            responses = _mapping(rec, "responses", file, row)
            category = rec.get("category")
            for model, score in scores.items():
                _no_nan(score, "score", "null for a model that was not run", file, row, f"scores.{model}")
                _no_nan(costs.get(model), "cost", "leave it out to price the tokens", file, row, f"costs.{model}")
                q = as_number(score, file=file, row=row, field=f"scores.{model}", allow_none=True)
                if q is None:
                    continue
                if not 0.0 <= q <= 1.0:
                    raise DataError(f"quality {q!r} is outside [0, 1]", file=file, row=row, field=f"scores.{model}")
                cost = as_number(costs.get(model), file=file, row=row, field=f"costs.{model}", allow_none=True)
                if cost is not None and cost < 0:
                    raise DataError(f"cost {cost!r} is negative", file=file, row=row, field=f"costs.{model}")
                tin, tout = _tokens(tokens.get(model), file, row, f"tokens.{model}")
                response = responses.get(model)
                if response is not None and not isinstance(response, str):
                    raise DataError("response must be a string", file=file, row=row, field=f"responses.{model}")
                rows.append({
                    "prompt_id": pid, "prompt": question, "model": str(model), "quality": q,
                    "cost": np.nan if cost is None else cost,
                    "response": response or None,
                    "input_tokens": np.nan if tin is None else tin,
                    "output_tokens": np.nan if tout is None else tout,
                    "category": category if isinstance(category, str) else (None if category is None else str(category)),
                    "_file": file, "_row": row,
                })
            n += 1
        sources.append(source_entry(path, records=n))
    if not rows:
        raise DataError("no scores in the input", file=str(files[0]))
    df = pd.DataFrame(rows)
    need = df["cost"].isna().to_numpy()
    input_only = int((need & df["output_tokens"].isna().to_numpy() & df["response"].isna().to_numpy()).sum())
    table = PriceTable(options.prices)
    df = fill_costs(df, table)
    notes = [f"scores-json: {len(df)} outcomes, {df['prompt_id'].nunique()} prompts, {df['model'].nunique()} models "
             f"from {len(files)} file(s)"]
    if need.any():
        notes.append(f"{int(need.sum())} cost(s) computed as tokens x list price (missing token counts: {tokenizer_name()})")
    if input_only:
        notes.append(f"{input_only} cost(s) cover input tokens only (no output tokens or response given)")
    return ImportResult(outcomes=df, sources=sources, prices=table.used(), notes=notes)
