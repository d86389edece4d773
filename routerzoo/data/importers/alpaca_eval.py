"""``alpaca-eval``: AlpacaEval pairwise annotations (tatsu-lab/alpaca_eval, ``results/``).

Input: ``annotations.json`` files (or directories holding them, e.g.
``results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json``), each a JSON list with one
record per instruction::

    {"instruction": "...", "dataset": "helpful_base",
     "generator_1": "gpt4_1106_preview", "output_1": "...",
     "generator_2": "claude-2.1", "output_2": "...",
     "annotator": "weighted_alpaca_eval_gpt4_turbo", "preference": 1.83}

Preference pairs: ``model_a`` = ``generator_1`` (AlpacaEval's reference model), ``model_b`` =
``generator_2``; ``winner`` from ``preference`` (1 = output_1 better ... 2 = output_2 better):
above 1.5 -> ``b``, below 1.5 -> ``a``, exactly 1.5 -> ``tie``; weight 1. ``prompt`` =
``instruction``, ``prompt_id`` = ``alpaca-<first 16 hex digits of sha256(instruction)>`` (so the
same instruction has the same id in every file), ``category`` = ``dataset``.

Records whose ``preference`` is null (the judge gave no verdict) are skipped and counted in the
notes; a preference outside [1, 2] or an instruction repeated within one file is an error.

Licence: the AlpacaEval annotations are CC BY-NC 4.0 (non-commercial); the manifest notes say so.
"""

from __future__ import annotations

import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    as_number,
    expand_paths,
    read_records,
    text_id,
)
from routerzoo.errors import DataError

NAME = "alpaca-eval"
SUMMARY = "AlpacaEval annotations.json: judge preferences between generator_1 and generator_2"


def _row(rec: dict, file: str, row: int, seen: set[str]) -> dict | None:
    for key in ("instruction", "generator_1", "generator_2", "preference"):
        if key not in rec:
            raise DataError("annotation lacks this field", file=file, row=row, field=key)
    instruction = rec["instruction"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise DataError("instruction must be a non-empty string", file=file, row=row, field="instruction")
    pref = as_number(rec["preference"], file=file, row=row, field="preference", allow_none=True)
    if pref is None:
        return None
    if not 1.0 <= pref <= 2.0:
        raise DataError(f"preference {pref!r} is outside [1, 2]", file=file, row=row, field="preference")
    if instruction in seen:
        raise DataError("instruction appears twice in this file", file=file, row=row, field="instruction")
    seen.add(instruction)
    dataset = rec.get("dataset")
    return {
        "prompt_id": text_id(instruction, "alpaca"),
        "prompt": instruction,
        "model_a": rec["generator_1"],
        "model_b": rec["generator_2"],
        "winner": "b" if pref > 1.5 else ("a" if pref < 1.5 else "tie"),
        "weight": 1.0,
        "category": dataset if isinstance(dataset, str) else None,
    }


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, ("annotations.json",), "AlpacaEval annotations.json")
    sources: list = []
    notes: list = []
    rows = read_records(files, _row, suffixes=(".json",), sources=sources, notes=notes,
                        reads="alpaca-eval reads annotations.json files (a JSON list of annotation records)",
                        skipped="skipped {n} annotation(s) with a null preference in {file}",
                        empty="no annotations with a preference")
    df = pd.DataFrame(rows)
    notes.insert(0, f"alpaca-eval: {len(df)} preference pairs over {df['prompt_id'].nunique()} instructions "
                    f"from {len(files)} file(s); winner from preference (> 1.5 -> b, < 1.5 -> a, = 1.5 -> tie)")
    notes.append("licence: AlpacaEval annotations are CC BY-NC 4.0 (non-commercial use only)")
    return ImportResult(preferences=df, sources=sources, notes=notes)
