"""Importer and writer edges that used to mislead or crash (issue 18): fields over 128 KiB, files
separated by something other than what their name says, NaN literals in scores-json, a full disk
during the write, and an unknown placeholder in a ``data generate`` instruction. Each is a clean
import or one line naming what is wrong, and nothing is written."""

from __future__ import annotations

import errno
import json

import pytest
from conftest import cli_refused, topic_outcomes

from routerzoo.cli import main
from routerzoo.data.dataset import load_dataset
from routerzoo.data.importers import import_files
from routerzoo.errors import DataError


def test_a_5_mb_prompt_field_imports(tmp_path):
    df = topic_outcomes(2)
    long_prompt = "Summarise this: " + "lorem ipsum, \"dolor\" sit amet\n" * 170_000  # ~5 MB, quotes and newlines
    df.loc[df["prompt_id"] == df["prompt_id"].iloc[0], "prompt"] = long_prompt
    src = tmp_path / "big.csv"
    df.to_csv(src, index=False)
    ds = import_files([src], "long")
    assert len(ds.outcomes) == len(df)
    assert (ds.outcomes["prompt"] == long_prompt).sum() == 3


@pytest.mark.parametrize("sep, name, word", [(";", "out.csv", "semicolon"), ("\t", "out.csv", "tab"),
                                              ("|", "out.csv", "pipe")])
def test_a_file_separated_otherwise_is_named_as_such(tmp_path, capsys, sep, name, word):
    src = tmp_path / name
    topic_outcomes(2).to_csv(src, index=False, sep=sep)
    with pytest.raises(DataError, match=f"looks {word}-separated"):
        import_files([src], "long")
    cli_refused(capsys, ["data", "import", src, "--format", "long", "--out", tmp_path / "d"], f"{word}-separated")
    assert not (tmp_path / "d").exists()


def _scores(tmp_path, score="0.5", cost="0.001", tokens="[3, 4]"):
    text = ('[{"id": "q1", "question": "What is 2+2?", "scores": {"a": 1.0, "b": SCORE}, '
            '"costs": {"a": 0.002, "b": COST}, "tokens": {"a": [3, 4], "b": TOKENS}}]')
    text = text.replace("SCORE", score).replace("COST", cost).replace("TOKENS", tokens)
    path = tmp_path / "s.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("field, kwargs", [("scores.b", {"score": "NaN"}), ("costs.b", {"cost": "NaN"}),
                                           ("tokens.b.output", {"tokens": "[3, NaN]"})])
def test_nan_literals_in_scores_json_are_refused_naming_the_record(tmp_path, capsys, field, kwargs):
    src = _scores(tmp_path, **kwargs)
    with pytest.raises(DataError, match="is NaN") as err:
        import_files([src], "scores-json")
    assert err.value.row == 1 and err.value.field == field
    # null still means "not run" / "price the tokens", as documented
    ok = import_files([_scores(tmp_path, score="null", cost="null")], "scores-json")
    assert ok.outcomes["model"].tolist() == ["a"]


def test_a_full_disk_during_import_is_one_line_and_keeps_the_old_dataset(tmp_path, capsys, monkeypatch):
    src = tmp_path / "a.csv"
    topic_outcomes(3).to_csv(src, index=False)
    out = tmp_path / "d"
    assert main(["data", "import", str(src), "--format", "long", "--out", str(out)]) == 0
    before = json.loads((out / "dataset.json").read_text())
    import routerzoo.data.dataset as dataset_mod

    def full(path, data):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(dataset_mod, "_write_file", full)
    cli_refused(capsys, ["data", "import", src, "--format", "long", "--out", out, "--overwrite"],
              "cannot write dataset directory", "File too large [EFBIG]", "is unchanged")
    monkeypatch.undo()
    assert json.loads((out / "dataset.json").read_text()) == before and load_dataset(out).manifest["sha256"] == before["sha256"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".d.tmp")] == []


@pytest.mark.parametrize("instruction, must", [("Answer in {lang}: {prompt}", "unknown placeholder {lang}"),
                                               ("{prompt} then {", "not a valid template"),
                                               ("{prompt} {prompt.upper}", "unknown placeholder {prompt.upper}")])
def test_generate_instruction_with_an_unknown_placeholder_is_one_line(tmp_path, capsys, instruction, must):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"question_id": 1, "question": "2+2?", "answer": "4"}) + "\n")
    out = tmp_path / "gen"
    cli_refused(capsys, ["data", "generate", "--questions", q, "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                       "--out", out, "--instruction", instruction], "--instruction", must)
    assert not out.exists()
