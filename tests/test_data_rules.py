"""Hand-picked bad inputs named in issue 6: each is a one-line DataError naming file, row and field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from routerzoo.cli import main
from routerzoo.data.importers import import_files
from routerzoo.errors import DataError

HEAD = "prompt_id,prompt,model,quality,cost\n"


@pytest.mark.parametrize("fmt,name,content,message,row,field", [
    ("long", "a.csv", HEAD + "q1,hi,m,1,0.1\nq2,ho,m,1,0.0", "cut short", 2, None),  # last cost cut: 0.0|5
    ("long", "a.csv", HEAD + "q1,hi,m,1,0.1\nq2,ho,m,1\n", "the row is cut short", 2, None),
    ("long", "a.csv", HEAD + "q1,hi,m,1,0.1\nq2,ho,m,1,0,extra\n", "has 6 field(s)", 2, None),
    ("long", "a.csv", "prompt,model,quality,quality\nhi,m,1,1\n", "appears twice", None, "quality"),
    ("long", "a.csv", HEAD + "q1,hi,,1,0.1\n", "model is missing", 1, "model"),
    ("long", "a.jsonl", '{"prompt": "hi", "quality": 1, "cost": 0, "model": null}\n', "model is missing", 1, "model"),
    ("long", "a.csv", "prompt,model,quality,cost,input_tokens\nhi,m,1,0.1,12.7\n", "whole number", 1, "input_tokens"),
    ("long", "a.csv", HEAD + "q1,hi,m,1,inf\n", "non-finite", 1, "cost"),
    ("long", "a.csv", "prompt,model,qualty,cost\nhi,m,1,0\n", "did you mean 'quality'", None, "quality"),
    ("routerbench", "rb.csv", "sample_id,prompt,eval_name,a,a|total_cost\ns1,hi,x,1,0.1\ns2,ho,x,0", "cut short", 2, None),
    ("routerbench", "rb.csv", "sample_id,prompt,eval_name,a,a|total_cost\ns1,hi,x,1,0.1\ns2,ho,x\n", "cut short", 2, None),
    ("pairwise", "p.csv", "prompt,model_a,model_b,winner\nhi,x,y,a\nho,x,y,b", "cut short", 2, None),
    ("pairwise", "p.csv", "prompt,model_a,model_b,winner\nhi,,y,a\n", "model_a is missing", 1, "model_a"),
    ("routellm", "mmlu_x.csv", "prompt,a,b\nq1,True,False\nq2,True,Fal", "cut short", 2, None),
    ("scores-json", "s.jsonl", '{"question": "a", "scores": {"m": 1}}\n{"question": "b", "scores": {"m"', "truncated", 2, None),
    ("routerarena", "m.jsonl", '{"global_index": "A_1", "question": "q", "evaluation_result": {"score": 1, "inf', "truncated", 1, None),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, fmt, name, content, message, row, field):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError) as e:
        import_files([f], fmt)
    assert message in str(e.value) and e.value.file == str(f)
    assert (e.value.row, e.value.field) == (row, field)
    assert main(["data", "import", str(f), "--format", fmt, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and not (tmp_path / "d").exists()


def test_pandas_index_column_is_dropped_with_a_note(tmp_path):
    f = tmp_path / "a.csv"
    pd.DataFrame({"prompt": ["hi", "ho"], "model": "m", "quality": [1, 0], "cost": 0.1}).to_csv(f)  # index=True
    ds = import_files([f], "long")
    assert any("dropped the unnamed index column" in n for n in ds.manifest["notes"]) and len(ds.outcomes) == 2
    df = pd.read_csv(f)
    df.iloc[:, 0] = [5, 9]  # not 0..n-1: not an index, so an error
    df.to_csv(f, index=False)
    with pytest.raises(DataError, match="without a header name"):
        import_files([f], "long")


def test_parquet_prompt_id_index_keeps_ids(tmp_path):
    f = tmp_path / "a.parquet"
    df = pd.DataFrame({"prompt_id": ["x1", "x2"], "prompt": ["hi", "ho"], "model": "m", "quality": [1.0, 0.0], "cost": 0.1})
    df.set_index("prompt_id").to_parquet(f)
    ds = import_files([f], "long")
    assert sorted(ds.outcomes["prompt_id"]) == ["x1", "x2"]


def test_scores_json_nan_score_is_left_out_and_counted(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"question": "a", "scores": {"m": 1, "n": None}, "costs": {"m": 0, "n": 0}},
                             {"question": "b", "scores": {"m": 0, "n": 1}, "costs": {"m": 0, "n": 0}}]))
    ds = import_files([f], "scores-json")
    assert len(ds.outcomes) == 3


def test_long_empty_cost_is_noted_with_its_row(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("prompt,model,quality,cost,input_tokens,output_tokens\nhi,gpt-4-1106-preview,1,0.5,1,1\n"
                 "ho,gpt-4-1106-preview,1,,1000,0\n")
    ds = import_files([f], "long")
    assert any(f"1 row(s) have no cost (first: {f}, row 2)" in n for n in ds.manifest["notes"])
