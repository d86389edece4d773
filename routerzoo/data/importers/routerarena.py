"""``routerarena``: RouterArena cached model results (RouteWorks/RouterArena, ``cached_results/``).

Input: ``<model>.jsonl`` files (or directories holding them), one line per query::

    {"global_index": "AIME_112", "question": "...", "llm_selected": "claude-3-haiku-20240307",
     "generated_answer": "...", "token_usage": {"input_tokens": 349, "output_tokens": 120},
     "success": true, "error": null,
     "evaluation_result": {"score": 0.0, "metric": "math_metric", "inference_cost": 0.000237, ...}}

``token_usage`` and ``evaluation_result`` may also be strings holding JSON or a Python ``repr`` of
a dict (older RouterArena dumps); they are parsed with ``json`` and then ``ast.literal_eval``,
never ``eval``.

Outcomes: ``model`` = ``llm_selected`` (else the file name's stem); ``prompt_id`` =
``global_index``; ``prompt`` = ``question``; ``category`` = the part of ``global_index`` before
the first ``_`` (the source benchmark, e.g. ``MMLUPro``); ``quality`` =
``evaluation_result.score``; ``response`` = ``generated_answer``; tokens from ``token_usage``.
``cost`` = ``evaluation_result.inference_cost`` when present, else tokens × list price
(``--prices FILE``, then RouterArena's own ``model_cost/cost.json`` when it sits beside
``cached_results/``, then genai-prices). The manifest's ``prices`` lists the per-token price of
each model where one is known, marking costs taken from the data.

Scores a hair outside [0, 1] (RouterArena's METEOR metric gives -0.033 on one NarrativeQA answer)
are clipped when within 0.05 of the range and counted in the notes; anything further out is an
error. Records without an ``evaluation_result`` (failed generations) are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    as_number,
    expand_paths,
    parse_object,
    read_records,
    source_entry,
)
from routerzoo.data.prices import Price, PriceTable, load_price_file
from routerzoo.errors import DataError

NAME = "routerarena"
SUMMARY = "RouterArena cached_results/<model>.jsonl: score, tokens and USD cost per query"
CLIP_TOLERANCE = 0.05


def _sibling_costs(files: list[Path]) -> tuple[dict[str, Price], Path | None]:
    for f in files:
        for cand in (f.parent.parent / "model_cost" / "cost.json", f.parent / "model_cost" / "cost.json"):
            if cand.is_file():
                return load_price_file(cand, str(cand)), cand
    return {}, None


def _tokens(usage, key: str, file: str, row: int) -> float | None:
    value = usage.get(key)
    if value is None:
        return None
    v = as_number(value, file=file, row=row, field=f"token_usage.{key}")
    if v < 0:
        raise DataError(f"token count must be >= 0, got {value!r}", file=file, row=row, field=f"token_usage.{key}")
    return v


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, (".jsonl",), "RouterArena cached_results .jsonl")
    notes: list = []
    sources: list = []
    clipped = 0

    def parse(rec: dict, file: str, row: int, seen: set[str]) -> dict | None:
        nonlocal clipped
        for key in ("global_index", "question"):
            if rec.get(key) in (None, ""):
                raise DataError("record lacks this field", file=file, row=row, field=key)
        gid = str(rec["global_index"])
        if gid in seen:
            raise DataError(f"global_index {gid!r} appears twice in this file", file=file, row=row, field="global_index")
        seen.add(gid)
        evaluation = rec.get("evaluation_result")
        if evaluation in (None, "", {}):
            return None
        evaluation = parse_object(evaluation, file=file, row=row, field="evaluation_result")
        if "score" not in evaluation:
            raise DataError("evaluation_result has no score", file=file, row=row, field="evaluation_result.score")
        score = as_number(evaluation["score"], file=file, row=row, field="evaluation_result.score")
        if not (0.0 <= score <= 1.0):
            if -CLIP_TOLERANCE <= score <= 1.0 + CLIP_TOLERANCE:
                score = min(max(score, 0.0), 1.0)
                clipped += 1
            else:
                raise DataError(f"score {score!r} is outside [0, 1]", file=file, row=row, field="evaluation_result.score")
        usage = rec.get("token_usage")
        usage = {} if usage in (None, "") else parse_object(usage, file=file, row=row, field="token_usage")
        cost = evaluation.get("inference_cost")
        cost = None if cost is None else as_number(cost, file=file, row=row, field="evaluation_result.inference_cost")
        if cost is not None and cost < 0:
            raise DataError(f"cost {cost!r} is negative", file=file, row=row, field="evaluation_result.inference_cost")
        model = rec.get("llm_selected") or Path(file).stem
        answer = rec.get("generated_answer")
        return {
            "prompt_id": gid,
            "prompt": rec["question"],
            "model": str(model),
            "quality": score,
            "cost": cost,
            "response": answer if isinstance(answer, str) and answer else None,
            "input_tokens": _tokens(usage, "input_tokens", file, row),
            "output_tokens": _tokens(usage, "output_tokens", file, row),
            "category": gid.split("_", 1)[0],
        }

    rows = read_records(files, parse, suffixes=(".jsonl", ".json"), sources=sources, notes=notes,
                        reads="routerarena reads cached_results/<model>.jsonl files (one JSON object per line)",
                        skipped="skipped {n} record(s) without an evaluation_result (failed generations) in {file}",
                        empty="no evaluated records")
    df = pd.DataFrame(rows)
    sibling, sibling_path = _sibling_costs(files)
    table = PriceTable(options.prices, extra=sibling)
    if sibling_path is not None:
        sources.append(source_entry(sibling_path, role="per-token prices"))
    missing = df["cost"].isna().to_numpy()
    cost = df["cost"].to_numpy(dtype=np.float64, copy=True)
    models = df["model"].to_numpy()
    from_data: dict[str, int] = {}
    for m in pd.unique(models):
        sel = models == m
        need = sel & missing
        if need.any():
            tin = df["input_tokens"].to_numpy(dtype=np.float64)
            tout = df["output_tokens"].to_numpy(dtype=np.float64)
            no_tokens = need & (np.isnan(tin) | np.isnan(tout))
            if no_tokens.any():
                i = int(np.flatnonzero(no_tokens)[0])
                raise DataError("no evaluation_result.inference_cost and no token_usage to compute a cost from",
                                file=df["_file"].iat[i], row=int(df["_row"].iat[i]), field="token_usage")
            cost[need] = table.get(m).cost(tin[need], tout[need])
        if (sel & ~missing).any():
            from_data[m] = int((sel & ~missing).sum())
    df["cost"] = cost
    prices = table.used()
    for m, n in from_data.items():
        price = table.find(m, record=False)
        label = f"{n} cost(s) from evaluation_result.inference_cost in the data"
        if m in prices:
            label += f"; the others from tokens x {prices[m]['source']}"
        elif price is not None:
            label += f"; list price from {price.source}"
        prices[m] = {"input": price.input if price else None, "output": price.output if price else None, "source": label}
    if clipped:
        notes.append(f"clipped {clipped} score(s) within {CLIP_TOLERANCE} outside [0, 1] into the range")
    notes.insert(0, f"routerarena: {len(df)} outcomes, {df['prompt_id'].nunique()} queries, "
                    f"{df['model'].nunique()} models from {len(files)} file(s)")
    return ImportResult(outcomes=df, sources=sources, prices=prices, notes=notes)
