"""Property-based corruption of valid input files, for every import format.

Each example takes a small valid file of one format and corrupts it: cut at a byte, flip bytes,
drop or duplicate a column / field, or put a bad value (NaN, inf, negative, wrong type, 12.7
tokens, ...) into one record. Whatever happens, the outcome must be either

* a single :class:`~routerzoo.errors.UserError` whose message is one line (the CLI's
  ``routerzoo: error: ...``, exit 2), never another exception type; or
* a clean import that is not silently different:
  - cut: every imported row is a row of the original import (only whole trailing records may go);
  - drop column: every imported row agrees with the original on prompt, model(s) and quality/winner;
  - duplicate column / bad value in record r: the rows of every *other* record are unchanged and
    any new row belongs to record r;
  - byte flips: the dataset is valid (it saves, loads and verifies; flipped bytes in text can
    legitimately change that text).

Examples per run: ``EXAMPLES`` (40) per format and corruption family, 8 formats x 3 families
(byte-level, column-level, value-level) = 960 examples (120 per format); about 60 s on 2 cores.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routerzoo.data.dataset import load_dataset, save_dataset
from routerzoo.data.importers import import_files
from routerzoo.errors import UserError

EXAMPLES = 40
PRICES = {m: {"input": 1.0, "output": 2.0} for m in ("a", "b", "m", "gpt-4-1106-preview", "claude-3-haiku-20240307")}
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _csv(records: list[dict]) -> bytes:
    return pd.DataFrame(records).to_csv(index=False).encode()


def _jsonl(records: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def _json(records: list[dict]) -> bytes:
    return json.dumps(records, indent=1).encode()


# format -> (file name, records, serialiser)
SAMPLES = {
    "long": ("out.csv", [
        {"prompt_id": f"q{i}", "prompt": f"What is {i} + {i}?", "model": m, "quality": float((i + j) % 2),
         "cost": 0.001 * (j + 1), "input_tokens": 7 + i, "output_tokens": 3, "category": "math"}
        for i in range(3) for j, m in enumerate(("a", "b"))], _csv),
    "pairwise": ("pairs.csv", [
        {"prompt": f"Write a poem about {w}.", "model_a": "a", "model_b": "b", "winner": win, "weight": 1.0}
        for w, win in (("rain", "model_a"), ("snow", "tie"), ("sun", "model_b"))], _csv),
    "routerbench": ("rb.csv", [
        {"sample_id": f"s{i}", "prompt": f"Question number {i}?", "eval_name": "mmlu", "a": float(i % 2),
         "a|model_response": f"answer {i}", "a|total_cost": 0.01, "b": 1.0, "b|total_cost": 0.002}
        for i in range(3)], _csv),
    "routellm": ("mmlu_test.csv", [
        {"prompt": f"Pick the right option {i}.", "a": i % 2 == 0, "b": True} for i in range(3)], _csv),
    "scores-json": ("s.json", [
        {"id": f"q{i}", "question": f"Capital number {i}?", "category": "geo", "scores": {"a": 1.0, "b": i / 4},
         "costs": {"a": 0.002, "b": 0.0001}, "tokens": {"a": {"input": 5, "output": 9}}} for i in range(3)], _json),
    "routerarena": ("m.jsonl", [
        {"global_index": f"MMLU_{i}", "question": f"Q{i}?", "llm_selected": "claude-3-haiku-20240307",
         "generated_answer": "A", "token_usage": {"input_tokens": 10, "output_tokens": 5},
         "evaluation_result": {"score": i / 2, "inference_cost": 0.001}} for i in range(3)], _jsonl),
    "alpaca-eval": ("annotations.json", [
        {"instruction": f"Say {w}", "generator_1": "a", "generator_2": "b", "preference": p, "dataset": "x"}
        for w, p in (("hi", 1.2), ("bye", 1.5), ("yo", 1.9))], _json),
    "mmlu-pro": ("model_outputs_m_5shots.json", [
        {"question_id": i, "question": f"Question {i}?", "options": ["yes", "no"], "answer": "A", "answer_index": 0,
         "category": "math", "src": "x", "pred": "A" if i % 2 else "B", "model_outputs": "The answer is (A)."}
        for i in range(1, 4)], _json),
}
BAD_VALUES = [None, float("nan"), float("inf"), -float("inf"), -1, -0.5, 1.5, 12.7, 0, "", " ", "abc", "NaN", True,
              [1, 2], {"k": 1}, 10**30, "1e400"]


def _rows(ds) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    out = None if ds.outcomes is None else ds.outcomes.drop(columns=["split", "token_logprobs"])
    prefs = None if ds.preferences is None else ds.preferences.drop(columns=["split"])
    return out, prefs


def _keyset(df: pd.DataFrame | None, cols=None) -> set:
    if df is None:
        return set()
    df = df if cols is None else df[[c for c in cols if c in df.columns]]
    return {tuple(None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is None else v for v in row)
            for row in df.astype(object).itertuples(index=False)}


def _import(fmt: str, path: Path):
    """The import's outcome: a dataset, or the UserError (any other exception fails the test)."""
    prices = path.parent / "prices.json"
    prices.write_text(json.dumps(PRICES))
    try:
        return import_files([path], fmt, prices=prices)
    except UserError as exc:
        assert "\n" not in str(exc), f"multi-line error: {exc!r}"
        assert str(exc).strip()
        return exc


def _write(fmt: str, tmp: Path, data: bytes) -> Path:
    name = SAMPLES[fmt][0]
    path = tmp / name
    path.write_bytes(data)
    return path


def _original(fmt: str, tmp: Path):
    name, records, ser = SAMPLES[fmt]
    ds = _import(fmt, _write(fmt, tmp, ser(records)))
    assert not isinstance(ds, UserError), ds
    return ds


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_samples_import_cleanly(fmt, tmp_path):
    ds = _original(fmt, tmp_path)
    out = save_dataset(ds, tmp_path / "d")
    assert load_dataset(out).manifest["sha256"] == ds.manifest["sha256"]


@pytest.mark.parametrize("fmt", list(SAMPLES))
@SETTINGS
@given(data=st.data())
def test_byte_corruption(fmt, data):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        name, records, ser = SAMPLES[fmt]
        raw = ser(records)
        original = _original(fmt, tmp)
        kind = data.draw(st.sampled_from(["cut", "flip"]), label="kind")
        if kind == "cut":
            at = data.draw(st.integers(0, len(raw) - 1), label="cut at")
            bad = raw[:at]
        else:
            bad = bytearray(raw)
            for _ in range(data.draw(st.integers(1, 3), label="flips")):
                i = data.draw(st.integers(0, len(raw) - 1), label="at")
                bad[i] = data.draw(st.integers(0, 255), label="byte")
            bad = bytes(bad)
        result = _import(fmt, _write(fmt, tmp, bad))
        if isinstance(result, UserError):
            return
        if kind == "cut":
            for new, old in zip(_rows(result), _rows(original), strict=True):
                assert _keyset(new) <= _keyset(old), f"cut at {len(bad)} imported changed rows"
        else:
            out = save_dataset(result, tmp / "flipped")
            assert load_dataset(out, verify="full").manifest["sha256"] == result.manifest["sha256"]


def _columns(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r))


@pytest.mark.parametrize("fmt", list(SAMPLES))
@SETTINGS
@given(data=st.data())
def test_column_corruption(fmt, data):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        name, records, ser = SAMPLES[fmt]
        original = _original(fmt, tmp)
        col = data.draw(st.sampled_from(_columns(records)), label="column")
        kind = data.draw(st.sampled_from(["drop", "duplicate"]), label="kind")
        if kind == "drop":
            bad = ser([{k: v for k, v in r.items() if k != col} for r in records])
        elif ser is _csv:
            df = pd.DataFrame(records)
            df.insert(len(df.columns), "__dup__", df[col])
            bad = df.to_csv(index=False).replace("__dup__", col).encode()
        else:  # JSON: the same key twice in each object (the parser keeps the last)
            bad = ser(records).replace(f'"{col}":'.encode(), f'"{col}": null, "{col}":'.encode())
        result = _import(fmt, _write(fmt, tmp, bad))
        if isinstance(result, UserError):
            return
        if kind == "duplicate":
            for new, old in zip(_rows(result), _rows(original), strict=True):
                assert _keyset(new) == _keyset(old), f"duplicated column {col!r} changed the data"
        else:
            key = ["prompt", "model", "quality", "model_a", "model_b", "winner"]
            if col == "llm_selected":  # documented: the model name then comes from the file name
                key.remove("model")
            for new, old in zip(_rows(result), _rows(original), strict=True):
                assert _keyset(new, key) <= _keyset(old, key), f"dropping {col!r} changed other columns"


def _paths(rec, prefix=()):
    for k, v in rec.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


@pytest.mark.parametrize("fmt", list(SAMPLES))
@SETTINGS
@given(data=st.data())
def test_value_corruption(fmt, data):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        name, records, ser = SAMPLES[fmt]
        original = _original(fmt, tmp)
        r = data.draw(st.integers(0, len(records) - 1), label="record")
        path = data.draw(st.sampled_from(list(_paths(records[r]))), label="field")
        value = data.draw(st.sampled_from(BAD_VALUES), label="value")
        bad_records = copy.deepcopy(records)
        target = bad_records[r]
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        if ser is _csv:
            bad = _csv(bad_records)
        else:
            bad = ser(bad_records)
        result = _import(fmt, _write(fmt, tmp, bad))
        if isinstance(result, UserError):
            return
        # rows of the other records are unchanged; changed or new rows belong to record r
        for new, old in zip(_rows(result), _rows(original), strict=True):
            if new is None:
                assert old is None
                continue
            ids_r = set(old["prompt_id"].iloc[_record_rows(old, fmt, r)])
            others_old = _keyset(old[~old["prompt_id"].isin(ids_r)])
            gone = others_old - _keyset(new)
            assert not gone, f"{path}={value!r} in record {r} changed other records: {gone}"
            new_rows = new[~new["prompt_id"].isin(set(old["prompt_id"]) - ids_r)]
            assert len(new_rows) <= len(old[old["prompt_id"].isin(ids_r)]) + 2


def _record_rows(df: pd.DataFrame, fmt: str, r: int) -> list[int]:
    """Positions in ``df`` of the rows that came from source record ``r`` (order of first appearance)."""
    if fmt in ("long",):  # one record per row, written in order
        return [r]
    if fmt == "pairwise":
        return [r]
    ids = list(dict.fromkeys(df["prompt_id"]))
    pid = ids[r] if r < len(ids) else None
    return [i for i, p in enumerate(df["prompt_id"]) if p == pid]
