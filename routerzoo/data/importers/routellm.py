"""``routellm``: RouteLLM's cached evaluation results (lm-sys/RouteLLM, ``routellm/evals/``).

Input: files or directories (walked recursively) containing any of

- ``mmlu/responses/mmlu_<subject>.csv``: a ``prompt`` column and one boolean correctness column per
  model (``mistralai/Mixtral-8x7B-Instruct-v0.1``, ``gpt-4-1106-preview``). Category = subject.
- ``gsm8k/gsm8k_responses.csv``: ``prompt``, a boolean column per model and ``<model>_response``
  with the model's answer. Category = ``gsm8k``. Any other CSV is read the same way, its subset and
  category being the part of the file name before the first ``_``.
- ``mt_bench/question.jsonl`` (``question_id, category, turns``) with ``judgements.jsonl`` from the
  same directory (GPT-4 single-answer grades: ``question_id, model, score`` 1-10, ``turn``,
  ``user_prompt`` holding the model's answer). Quality = score / 10.
- ``contaminated_prompts.jsonl`` (``eval_prompt`` per line): prompts RouteLLM flagged as overlapping
  its router training data. They are always excluded, whether the file is named explicitly or sits
  in the directory of a data file, exactly as RouteLLM's own evaluation does (an MT-Bench question
  goes when either of its turns is listed); the manifest notes say how many.

Outcomes:

- ``prompt_id``: ``mmlu-<hash>`` / ``gsm8k-<hash>`` (first 16 hex digits of the sha256 of the prompt
  text); a text that occurs twice in a subset (MMLU has 105 such repeats) keeps both rows, the
  repeat as ``<id>-2``. MT-Bench uses its question id: ``mt_bench-<question_id>``.
- MT-Bench turns: turn 1 is the prompt ``mt_bench-<id>`` with the first user turn as text. Turn 2
  is a prompt of its own, ``mt_bench-<id>-t2``, whose text is both user turns joined by a blank
  line (what a router sees before answering turn 2); its input tokens also count the model's own
  turn-1 answer, which is part of the turn-2 conversation.
- Responses: GSM8K's ``<model>_response`` columns; MT-Bench answers are cut out of the judge prompt.
- Tokens (no counts in the files): input tokens are counted from the prompt, output tokens from the
  response (:mod:`routerzoo.data.tokens`). MMLU has no responses: RouteLLM generated its MMLU answers
  with ``max_new_tokens=1`` (a single answer letter after ``Answer:``), so output tokens = 1, and
  the same holds for any other CSV without response columns. RouteLLM's 5-shot MMLU examples are
  not in the files and are not counted.
- ``cost`` = tokens × list price: ``--prices FILE`` first, then genai-prices
  (gpt-4-1106-preview $10 / $30, Mixtral-8x7B $0.70 / $0.70 per 1M input / output tokens).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    as_number,
    expand_paths,
    fill_costs,
    first_bad,
    hash_ids,
    read_json_objects,
    read_json_records,
    read_table,
    source_entry,
)
from routerzoo.data.prices import PriceTable
from routerzoo.data.tokens import count_tokens, tokenizer_name
from routerzoo.errors import DataError

NAME = "routellm"
SUMMARY = "RouteLLM eval caches: MMLU / GSM8K CSVs, MT-Bench question + judgement JSONL"
CONTAMINATED = "contaminated_prompts.jsonl"
_RESPONSE = "_response"
_BOOL = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
_T1_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)
_T2_ANSWERS = re.compile(r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A's Conversation)", re.S)


def _subset(path: Path) -> tuple[str, str | None]:
    """(subset, category) from a CSV name: mmlu_<subject>.csv -> (mmlu, subject); gsm8k_x.csv -> (gsm8k, gsm8k)."""
    stem = path.stem
    head, _, tail = stem.partition("_")
    if head.lower() == "mmlu" and tail:
        return "mmlu", tail
    return head, head


def _read_contaminated(path: Path) -> set[str]:
    out = set()
    for row, rec in read_json_records(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("eval_prompt"), str):
            raise DataError("expected an object with a string 'eval_prompt'", file=str(path), row=row, field="eval_prompt")
        out.add(rec["eval_prompt"])
    return out


def _bool_column(df: pd.DataFrame, col: str) -> np.ndarray:
    raw = df[col]
    if raw.dtype == bool:
        return raw.to_numpy(dtype=np.float64)
    values = raw.map(lambda v: _BOOL.get(str(v).strip().lower(), np.nan) if not isinstance(v, bool) else float(v))
    first_bad(df, values.isna().to_numpy(), "correctness must be True or False, got {value!r}", col)
    return values.to_numpy(dtype=np.float64)


def _read_csv(path: Path, contaminated: set[str]) -> tuple[pd.DataFrame, int]:
    file = str(path)
    df = read_table(path, text_columns=["prompt"])
    if "prompt" not in df.columns:
        raise DataError("missing required column 'prompt' (is this a RouteLLM eval CSV?)", file=file, field="prompt")
    cols = [c for c in df.columns if c not in ("prompt", "_file", "_row")]
    responses = {c[: -len(_RESPONSE)]: c for c in cols if c.endswith(_RESPONSE)}
    models = [c for c in cols if c not in responses.values()]
    if not models:
        raise DataError("no model correctness columns (expected 'prompt' plus one True/False column per model)", file=file)
    for model, col in responses.items():
        if model not in models:
            raise DataError(f"response column {col!r} has no correctness column {model!r}", file=file, field=col)
    first_bad(df, df["prompt"].isna().to_numpy() | (df["prompt"].astype(str).str.strip() == "").to_numpy(),
              "prompt is empty", "prompt")
    drop = df["prompt"].isin(contaminated).to_numpy()
    df = df.loc[~drop].reset_index(drop=True)
    subset, category = _subset(path)
    ids = hash_ids(df["prompt"], subset)
    parts = []
    for model in models:
        quality = _bool_column(df, model)
        part = pd.DataFrame({
            "prompt_id": ids.to_numpy(),
            "prompt": df["prompt"].to_numpy(),
            "model": model,
            "quality": quality,
            "response": df[responses[model]].to_numpy() if model in responses else None,
            "category": category,
            "_file": file,
            "_row": df["_row"].to_numpy(),
        })
        if model not in responses:
            part["output_tokens"] = 1
        parts.append(part)
    return pd.concat(parts, ignore_index=True), int(drop.sum())


def _read_mt_bench(questions_path: Path, judgements_path: Path, contaminated: set[str]) -> tuple[pd.DataFrame, int, int]:
    qfile, jfile = str(questions_path), str(judgements_path)
    questions: dict = {}
    for row, rec in read_json_objects(questions_path):
        for key in ("question_id", "turns"):
            if key not in rec:
                raise DataError("question lacks this field", file=qfile, row=row, field=key)
        turns = rec["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise DataError("turns must be a non-empty list of strings", file=qfile, row=row, field="turns")
        qid = str(rec["question_id"])
        if qid in questions:
            raise DataError(f"question_id {qid} appears twice", file=qfile, row=row, field="question_id")
        questions[qid] = (turns, rec.get("category"))
    excluded = {q for q, (turns, _) in questions.items() if any(t in contaminated for t in turns[:2])}
    rows = []
    seen = set()
    skipped = 0
    for row, rec in read_json_objects(judgements_path):
        for key in ("question_id", "model", "score"):
            if key not in rec:
                raise DataError("judgement lacks this field", file=jfile, row=row, field=key)
        qid = str(rec["question_id"])
        if qid not in questions:
            raise DataError(f"question_id {qid} is not in {questions_path.name}", file=jfile, row=row, field="question_id")
        if qid in excluded:
            continue
        turn = int(as_number(rec.get("turn", 1), file=jfile, row=row, field="turn"))
        if turn not in (1, 2):
            raise DataError(f"turn must be 1 or 2, got {rec.get('turn')!r}", file=jfile, row=row, field="turn")
        score = as_number(rec["score"], file=jfile, row=row, field="score", allow_none=True)
        if score is None or score < 0:  # MT-Bench writes -1 when the judge's output had no rating
            skipped += 1
            continue
        if score > 10:
            raise DataError(f"score {score} is outside MT-Bench's 1-10 scale", file=jfile, row=row, field="score")
        model = str(rec["model"])
        key = (qid, model, turn)
        if key in seen:
            raise DataError(f"second judgement for question {qid}, model {model!r}, turn {turn}", file=jfile, row=row, field="question_id")
        seen.add(key)
        turns, category = questions[qid]
        user_prompt = rec.get("user_prompt") if isinstance(rec.get("user_prompt"), str) else ""
        if turn == 1:
            m = _T1_ANSWER.search(user_prompt)
            answers = [m.group(1)] if m else _T2_ANSWERS.findall(user_prompt)[:1]
            prompt, pid, context = turns[0], f"mt_bench-{qid}", [turns[0]]
        else:
            if len(turns) < 2:
                raise DataError(f"turn-2 judgement for question {qid}, which has one turn", file=jfile, row=row, field="turn")
            answers = _T2_ANSWERS.findall(user_prompt)
            prompt, pid = turns[0] + "\n\n" + turns[1], f"mt_bench-{qid}-t2"
            context = [turns[0], answers[0] if answers else "", turns[1]]
        response = answers[-1] if answers and (turn == 1 or len(answers) >= 2) else None
        rows.append({
            "prompt_id": pid, "prompt": prompt, "model": model, "quality": score / 10.0, "response": response,
            "category": category, "group": f"mt_bench-{qid}", "_file": jfile, "_row": row, "_context": context,
        })
    if not rows:
        raise DataError("no usable judgements", file=jfile)
    df = pd.DataFrame(rows)
    flat = [t for ctx in df["_context"] for t in ctx]
    counts = count_tokens(flat)
    bounds = np.cumsum([0] + [len(ctx) for ctx in df["_context"]])
    df["input_tokens"] = [int(counts[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return df.drop(columns="_context"), len(excluded), skipped


def _repeat_suffix(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Give the k-th repeat of a prompt text within a subset the id ``<id>-k`` (its rows stay).

    ``df`` holds CSV rows only: one source row (``_file``, ``_row``) per prompt, one line per model.
    """
    per_row = df.drop_duplicates(["_file", "_row"])[["prompt_id", "_file", "_row"]].copy()
    per_row["k"] = per_row.groupby("prompt_id").cumcount() + 1
    repeats = int((per_row["k"] > 1).sum())
    if repeats:
        per_row["new_id"] = np.where(per_row["k"] > 1, per_row["prompt_id"] + "-" + per_row["k"].astype(str),
                                     per_row["prompt_id"])
        df = df.merge(per_row[["_file", "_row", "new_id"]], on=["_file", "_row"], how="left")
        df["prompt_id"] = df.pop("new_id")
    return df, repeats


def read(paths, options: ImportOptions) -> ImportResult:
    explicit = {Path(p) for p in paths if Path(p).is_file()}
    for f in explicit:
        if not f.name.lower().endswith((".csv", ".jsonl")):
            raise DataError("format mismatch: routellm reads RouteLLM eval CSVs (mmlu_<subject>.csv, "
                            "gsm8k_responses.csv) and MT-Bench / contamination JSONL files", file=str(f))
    files = expand_paths(paths, (".csv", ".jsonl"), "RouteLLM eval (.csv / .jsonl)")
    csvs = [f for f in files if f.name.lower().endswith(".csv")]
    jsonls = [f for f in files if f.name.lower().endswith(".jsonl")]
    questions = [f for f in jsonls if f.name == "question.jsonl"]
    judgements = [f for f in jsonls if f.name in ("judgements.jsonl", "judgments.jsonl")]
    contaminated_files = [f for f in jsonls if f.name == CONTAMINATED]
    notes: list[str] = []
    other = [f for f in jsonls if f not in questions + judgements + contaminated_files]
    for f in other:
        if f in explicit:
            raise DataError("format mismatch: routellm reads MT-Bench question.jsonl + judgements.jsonl and "
                            "contaminated_prompts.jsonl, not other JSONL files", file=str(f))
        notes.append(f"ignored {f} (not a RouteLLM eval file)")
    # A contamination list applies to all data when named explicitly, else to the data files in its
    # directory and one level below (RouteLLM keeps mmlu/contaminated_prompts.jsonl beside mmlu/responses/).
    lists: dict[Path, set[str]] = {}

    def load_list(path: Path) -> set[str]:
        if path not in lists:
            lists[path] = _read_contaminated(path)
            if path not in contaminated_files:
                contaminated_files.append(path)
        return lists[path]

    cont_all: set[str] = set()
    for f in list(contaminated_files):
        if f in explicit:
            cont_all |= load_list(f)

    def contaminated_for(*paths: Path) -> set[str]:
        out = set(cont_all)
        for p in paths:
            for d in (p.parent, p.parent.parent):
                if (d / CONTAMINATED).is_file():
                    out |= load_list(d / CONTAMINATED)
        return out

    sources = []
    removed: dict[str, int] = {}
    csv_parts: list[pd.DataFrame] = []
    for path in csvs:
        df, n_removed = _read_csv(path, contaminated_for(path))
        subset = _subset(path)[0]
        removed[subset] = removed.get(subset, 0) + n_removed
        csv_parts.append(df)
        sources.append(source_entry(path, records=int(df["_row"].nunique())))
    parts: list[pd.DataFrame] = []
    repeats = 0
    if csv_parts:
        df, repeats = _repeat_suffix(pd.concat(csv_parts, ignore_index=True))
        parts.append(df)
    for qpath in questions:
        jpath = next((j for j in judgements if j.parent == qpath.parent), None)
        if jpath is None:
            raise DataError("MT-Bench question.jsonl needs judgements.jsonl in the same directory", file=str(qpath))
        df, n_excluded, skipped = _read_mt_bench(qpath, jpath, contaminated_for(qpath, jpath))
        removed["mt_bench"] = removed.get("mt_bench", 0) + n_excluded
        if skipped:
            notes.append(f"mt_bench: skipped {skipped} judgement(s) without a rating (score -1 or null) in {jpath}")
        parts.append(df)
        sources.append(source_entry(qpath))
        sources.append(source_entry(jpath, records=len(df)))
    for jpath in judgements:
        if not any(q.parent == jpath.parent for q in questions):
            raise DataError("MT-Bench judgements.jsonl needs question.jsonl in the same directory", file=str(jpath))
    if not parts:
        raise DataError("no RouteLLM result files among the inputs (only contamination lists)", file=str(files[0]))
    for f in lists:
        sources.append(source_entry(f, role="contaminated prompts (excluded)"))
    df = pd.concat(parts, ignore_index=True)
    table = PriceTable(options.prices)
    df = fill_costs(df, table)  # no costs in the caches: tokens (counted where missing) x list price
    subsets = df["prompt_id"].str.extract(r"^(.+?)-", expand=False).fillna("?")
    prompts = df.drop_duplicates("prompt_id").groupby(subsets)["prompt_id"].size()
    notes.insert(0, "routellm: " + ", ".join(
        f"{s} {int(n)} prompts" + (f" ({removed[s]} contaminated prompt(s) excluded)" if removed.get(s) else "")
        for s, n in prompts.items()))
    notes.append(f"token counts: {tokenizer_name()}; output tokens = 1 where the data has no responses "
                 "(RouteLLM generated its MMLU answers with max_new_tokens=1); cost = tokens x list price")
    if repeats:
        notes.append(f"{repeats} prompt text(s) repeat within a subset; the repeats keep their rows with ids '<id>-2', ...")
    out = df[["prompt_id", "prompt", "model", "quality", "cost", "response", "input_tokens", "output_tokens",
              "category", "_file", "_row"]]
    return ImportResult(outcomes=out, sources=sources, prices=table.used(), notes=notes)
