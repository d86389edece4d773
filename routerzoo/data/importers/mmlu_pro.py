"""``mmlu-pro``: MMLU-Pro evaluation results (TIGER-AI-Lab/MMLU-Pro, ``eval_results/``).

Input: one or more ``model_outputs_<MODEL>_5shots.zip`` files, or directories holding them
(searched recursively). Each zip holds one JSON file, a list with one record per question::

    {"question_id": 70, "question": "...", "options": ["...", ...], "answer": "I",
     "answer_index": 8, "category": "business", "src": "ori_mmlu-business_ethics",
     "pred": "D", "model_outputs": "... The answer is (D)."}

The extracted ``.json`` files are accepted too. The model name is ``<MODEL>`` from the zip's (or
else the JSON file's) name, e.g. ``gemini-1.5-pro-002``; a file whose name does not follow the
pattern uses its stem.

Outcomes:

- ``prompt_id`` = ``question_id``; ``prompt`` = the question followed by its lettered options
  (``A. ...`` one per line), which is what the model was asked; ``category`` = ``category``.
- ``quality`` = 1 when ``pred`` equals ``answer``, else 0 (a null ``pred``, no answer extracted,
  counts as wrong).
- ``response`` = ``model_outputs`` or ``generated_text`` (the chain-of-thought answer).
- ``input_tokens`` / ``output_tokens`` are counted from the prompt and the response with
  :func:`routerzoo.data.tokens.count_tokens` (cl100k_base). The 5-shot examples the models also
  saw are not stored in the files and not counted: costs are those of asking the question alone.
- ``cost`` = tokens × list price. Prices come from ``--prices FILE`` when given, then from the
  bundled ``routerzoo/resources/prices/mmlu_pro.yaml`` (list prices of the 15 instruction-tuned
  models, with sources), then from genai-prices.

Records that are not JSON objects (DeepSeek-Coder-V2's file has 43 stray strings such as
``"other"``) are skipped and counted in the manifest notes. A few question ids carry a different
question text in different models' files (MMLU-Pro fixed 17 questions between runs): the most
common text keeps the plain id and each other variant gets ``<question_id>~2``, ``~3``, ... so
every outcome stays paired with the text its model answered.

Errors: a file that is not a zip / JSON (e.g. a CSV), a corrupt zip, truncated JSON, a record
missing a field, or a question id repeated within one file stops the import with a message naming
file, record number and field.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    expand_paths,
    fill_costs,
    parse_json_document,
    read_text,
    source_entry,
)
from routerzoo.data.prices import PriceTable, bundled_price_file
from routerzoo.data.tokens import count_tokens, tokenizer_name
from routerzoo.errors import DataError

NAME = "mmlu-pro"
SUMMARY = "MMLU-Pro eval_results zips (model_outputs_<MODEL>_5shots.zip): correctness, CoT responses"
DEFAULT_PRICES = "mmlu_pro.yaml"
_MODEL_RE = re.compile(r"model_outputs_(?P<model>.+?)_\d+shots$")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def model_from_name(name: str) -> str | None:
    """``<MODEL>`` of ``model_outputs_<MODEL>_5shots.zip`` / ``.json``, or None."""
    stem = Path(name).name
    for suffix in (".zip", ".json"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    m = _MODEL_RE.match(stem)
    return m.group("model") if m else None


def format_prompt(question: str, options: list[str]) -> str:
    """The question and its lettered options, one per line."""
    return "\n".join([question] + [f"{_LETTERS[i]}. {opt}" for i, opt in enumerate(options)])


def _json_members(path: Path) -> list[tuple[str, str, bytes]]:
    """``(label, member name, bytes)`` of each JSON file in a zip, or of the JSON file itself."""
    name = path.name.lower()
    if name.endswith(".json"):
        return [(str(path), path.name, read_text(path).encode("utf-8"))]
    if not name.endswith(".zip"):
        raise DataError(
            f"format mismatch: mmlu-pro reads MMLU-Pro eval_results zips (model_outputs_<MODEL>_5shots.zip) or the "
            f"JSON inside them, not a {path.suffix or 'suffix-less'} file (for tables in the canonical columns use "
            f"--format long)", file=str(path))
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n.lower().endswith(".json") and not n.startswith("__MACOSX/")]
            if not members:
                raise DataError(f"zip holds no .json file (it has {zf.namelist()[:5]})", file=str(path))
            return [(f"{path}::{m}", m, zf.read(m)) for m in members]
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        raise DataError(f"not a readable zip file ({type(exc).__name__}: {exc})", file=str(path)) from None


def _read_records(label: str, data, model: str, cols: dict, junk: list) -> int:
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of question records, got {type(data).__name__}", file=label)
    if not data:
        raise DataError("no records (empty JSON list)", file=label)
    seen: set = set()
    n = 0
    bad = 0
    for row, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            bad += 1
            continue
        try:
            qid, question, options, answer = rec["question_id"], rec["question"], rec["options"], rec["answer"]
            pred = rec["pred"]
        except KeyError as exc:
            raise DataError("record lacks this field", file=label, row=row, field=exc.args[0]) from None
        if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid).strip() == "":
            raise DataError(f"question_id must be an integer or string, got {qid!r}", file=label, row=row, field="question_id")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"question must be a non-empty string, got {str(question)[:60]!r}", file=label, row=row, field="question")
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options) or len(options) > len(_LETTERS):
            raise DataError("options must be a list of strings", file=label, row=row, field="options")
        if not isinstance(answer, str):
            raise DataError(f"answer must be a letter, got {answer!r}", file=label, row=row, field="answer")
        if pred is not None and not isinstance(pred, str):
            raise DataError(f"pred must be a letter or null, got {pred!r}", file=label, row=row, field="pred")
        response = rec.get("model_outputs")
        field = "model_outputs"
        if response is None or response == "":
            response, field = rec.get("generated_text", response), "generated_text"
        if response is not None and not isinstance(response, str):
            raise DataError(f"response must be a string, got {type(response).__name__}", file=label, row=row, field=field)
        category = rec.get("category")
        if category is not None and not isinstance(category, str):
            raise DataError(f"category must be a string, got {category!r}", file=label, row=row, field="category")
        key = str(qid).strip()
        if key in seen:
            raise DataError(f"question_id {qid!r} appears twice in this file", file=label, row=row, field="question_id")
        seen.add(key)
        cols["qid"].append(key)
        cols["prompt"].append(format_prompt(question, options))
        cols["model"].append(model)
        cols["quality"].append(1.0 if pred is not None and pred == answer else 0.0)
        cols["response"].append(response if response else None)
        cols["category"].append(category)
        cols["_file"].append(label)
        cols["_row"].append(row)
        n += 1
    if bad:
        junk.append((label, bad))
    if n == 0:
        raise DataError("no question records (every entry is something other than a JSON object)", file=label)
    return n


def _variant_ids(df: pd.DataFrame) -> tuple[pd.Series, int]:
    """Plain question id for each question's most common text, ``<id>~k`` for other variants."""
    counts = df.groupby(["qid", "prompt"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["qid", "n", "prompt"], ascending=[True, False, True], kind="mergesort")
    counts["rank"] = counts.groupby("qid").cumcount() + 1
    counts["prompt_id"] = np.where(counts["rank"] == 1, counts["qid"], counts["qid"] + "~" + counts["rank"].astype(str))
    n_multi = int((counts["rank"] > 1).groupby(counts["qid"]).any().sum())
    ids = df[["qid", "prompt"]].merge(counts[["qid", "prompt", "prompt_id"]], on=["qid", "prompt"], how="left")
    return pd.Series(ids["prompt_id"].to_numpy(), index=df.index), n_multi


def read(paths, options: ImportOptions) -> ImportResult:
    files = expand_paths(paths, (".zip",), "MMLU-Pro eval_results .zip")
    cols: dict[str, list] = {k: [] for k in ("qid", "prompt", "model", "quality", "response", "category", "_file", "_row")}
    junk: list[tuple[str, int]] = []
    sources = []
    for path in files:
        records = 0
        models = []
        for label, member, raw in _json_members(path):
            model = model_from_name(member) or model_from_name(path.name) or Path(member).stem
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise DataError(f"not UTF-8 text (byte {exc.start})", file=label) from None
            if not text.strip():
                raise DataError("file is empty", file=label)
            records += _read_records(label, parse_json_document(text, label), model, cols, junk)
            models.append(model)
        sources.append(source_entry(path, models=models, records=records))
    df = pd.DataFrame(cols)
    df["prompt_id"], n_variants = _variant_ids(df)
    df["input_tokens"] = count_tokens(df["prompt"].tolist())
    df["output_tokens"] = count_tokens(df["response"].tolist())
    table = PriceTable([options.prices, bundled_price_file(DEFAULT_PRICES)])
    df = fill_costs(df, table)
    models = df["model"].to_numpy()
    notes = [
        f"mmlu-pro: {len(df)} outcomes for {df['prompt_id'].nunique()} questions and {len(pd.unique(models))} models "
        f"from {len(files)} file(s)",
        f"token counts: {tokenizer_name()}; input tokens cover the question and its options only (the 5-shot "
        "examples the models also saw are not counted); cost = tokens x list price",
    ]
    for label, n in junk:
        notes.append(f"skipped {n} record(s) that are not JSON objects in {label}")
    if n_variants:
        notes.append(f"{n_variants} question id(s) have a different question text in different files; "
                     "the less common variants use ids '<question_id>~2', '~3', ... and share a split with the original")
    df["group"] = np.where(df["prompt_id"] != df["qid"], df["qid"], None)  # variants split with their question
    out = df[["prompt_id", "prompt", "model", "quality", "cost", "response", "input_tokens", "output_tokens",
              "category", "group", "_file", "_row"]]
    return ImportResult(outcomes=out, sources=sources, prices=table.used(), notes=notes)
