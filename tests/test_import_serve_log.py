"""``routerzoo data import LOG --format serve-log``: the server's request log becomes a dataset."""

from __future__ import annotations

import pytest

from routerzoo.cli import main
from routerzoo.data.dataset import load_dataset
from routerzoo.data.importers import import_files
from routerzoo.errors import DataError, UserError
from routerzoo.serving.request_log import RequestLog, RequestLogConfig, parse_feedback


def _rec(rid: str, text: str, model: str, cost: float | None = 1e-4, status: int = 200) -> dict:
    return {"request_id": rid, "time": 1.0, "endpoint": "chat", "scores": {"a": 0.4, "b": 0.6}, "chosen": model,
            "model": model, "fallbacks": [], "input_tokens": 10, "output_tokens": 20, "cost": cost,
            "status": status, "text": text}


def _make_log(directory, prompts: str = "full", feedback=(), records=None) -> None:
    lg = RequestLog(RequestLogConfig(dir=str(directory), prompts=prompts, flush_interval_s=0.02))
    lg.start()
    try:
        for r in records if records is not None else [
            _rec("r1", "What is 2+2?", "a"),
            _rec("r2", "What is 2+2?", "b"),
            _rec("r3", "Name a prime.", "a", cost=None),
            _rec("r4", "Name a prime.", "b"),
            _rec("r5", "Failed one.", "b", status=502),
        ]:
            lg.log(r)
        for fb in feedback:
            lg.add_feedback(parse_feedback(fb)).result(5)
    finally:
        lg.stop()


FEEDBACK = [
    {"request_id": "r1", "reward": 1},
    {"request_id": "r1", "reward": 0.5, "source": "judge"},
    {"request_id": "r2", "reward": 0},
    {"request_id": "r3", "reward": 1},
    {"request_id": "r3", "other_request_id": "r4", "winner": "a", "source": "judge"},
]


def test_rewards_become_outcomes_and_preferences_pairs(tmp_path):
    _make_log(tmp_path / "log", feedback=FEEDBACK)
    prices = tmp_path / "prices.yaml"
    prices.write_text("a: {input: 1.0, output: 2.0}\n")
    ds = import_files([tmp_path / "log"], "serve-log", prices=prices)
    out = ds.outcomes.set_index(["prompt", "model"]).sort_index()
    assert out.loc[("What is 2+2?", "a"), "quality"] == pytest.approx(0.75)  # client 1 and judge 0.5, averaged
    assert out.loc[("What is 2+2?", "b"), "quality"] == 0.0
    assert out.loc[("What is 2+2?", "a"), "cost"] == pytest.approx(1e-4)
    # no logged cost: tokens x price (10 x 1 + 20 x 2 per 1M)
    assert out.loc[("Name a prime.", "a"), "cost"] == pytest.approx(50 / 1e6)
    assert len(out) == 3
    prefs = ds.preferences
    assert prefs[["prompt", "model_a", "model_b", "winner"]].values.tolist() == [["Name a prime.", "a", "b", "a"]]
    src, = ds.manifest["sources"]
    assert src["format"] == "serve-log" and src["prompts"] == "full" and len(src["sha256"]) == 64
    assert src["records"] == 4 and src["feedback"] == 5
    assert any("average several rewards" in n for n in ds.manifest["notes"])


@pytest.mark.parametrize("mode", ["off", "hash"])
def test_a_log_without_prompt_texts_is_refused_in_one_line(tmp_path, mode, capsys):
    _make_log(tmp_path / "log", prompts=mode, feedback=FEEDBACK[:1])
    with pytest.raises(UserError, match="set log.prompts: full"):
        import_files([tmp_path / "log"], "serve-log")
    assert main(["data", "import", str(tmp_path / "log"), "--format", "serve-log", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"prompts: {mode}" in err


def test_cli_import_writes_a_verified_dataset(tmp_path):
    _make_log(tmp_path / "log", feedback=FEEDBACK[:4])
    prices = tmp_path / "prices.yaml"
    prices.write_text("a: {input: 1.0, output: 2.0}\n")
    assert main(["data", "import", str(tmp_path / "log"), "--format", "serve-log", "--out", str(tmp_path / "ds"),
                 "--prices", str(prices)]) == 0
    ds = load_dataset(tmp_path / "ds", verify=True)
    assert sorted(ds.models) == ["a", "b"] and ds.preferences is None


def test_unusable_preferences_name_the_feedback_row_and_can_be_skipped(tmp_path):
    records = [_rec("x1", "One prompt.", "a"), _rec("x2", "Another prompt.", "b"), _rec("x3", "One prompt.", "a"),
               _rec("x4", "One prompt.", "b")]
    _make_log(tmp_path / "log", records=records, feedback=[
        {"request_id": "x1", "other_request_id": "x2", "winner": "a"},
        {"request_id": "x1", "other_request_id": "x3", "winner": "b"},
        {"request_id": "x1", "other_request_id": "x4", "winner": "tie"},
    ])
    with pytest.raises(DataError, match="prompts differ") as exc:
        import_files([tmp_path / "log"], "serve-log")
    assert exc.value.row == 1 and exc.value.field == "other_request_id"
    ds = import_files([tmp_path / "log"], "serve-log", on_invalid="skip")
    assert [r["row"] for r in ds.rejects] == [1, 2]
    assert ds.preferences[["model_a", "model_b", "winner"]].values.tolist() == [["a", "b", "tie"]]


def test_a_log_without_feedback_says_what_to_send(tmp_path):
    _make_log(tmp_path / "log")
    with pytest.raises(DataError, match="POST /v1/feedback"):
        import_files([tmp_path / "log"], "serve-log")


def test_a_file_that_is_not_a_request_log_is_a_data_error(tmp_path):
    bad = tmp_path / "requests.db"
    bad.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(DataError, match="not a routerzoo request log") as exc:
        import_files([bad], "serve-log")
    assert exc.value.file == str(bad)


def test_prompts_out_lists_logged_prompts_for_data_generate_with_the_imports_ids(tmp_path, capsys):
    import json

    from routerzoo.data.generate import read_questions

    _make_log(tmp_path / "log", feedback=FEEDBACK)
    prompts = tmp_path / "prompts.jsonl"
    price_file = tmp_path / "prices.yaml"
    price_file.write_text("a: {input: 1.0, output: 2.0}\n")
    assert main(["data", "import", str(tmp_path / "log"), "--format", "serve-log", "--out", str(tmp_path / "ds"),
                 "--prompts-out", str(prompts), "--prices", str(price_file)]) == 0
    questions = read_questions(prompts, need_answer=False)  # what `data generate --scorer judge` reads
    assert [q.question for q in questions] == ["What is 2+2?", "Name a prime."]  # distinct, answered, in log order
    ds = load_dataset(tmp_path / "ds")
    ids = dict(zip(ds.outcomes["prompt"], ds.outcomes["prompt_id"], strict=False))
    assert {q.question: q.id for q in questions} == ids  # generated outcomes join the imported ones
    # a log without feedback yet: only the list
    _make_log(tmp_path / "quiet")
    assert main(["data", "import", str(tmp_path / "quiet"), "--format", "serve-log", "--out", str(tmp_path / "none"),
                 "--prompts-out", str(tmp_path / "q.jsonl")]) == 0
    assert "no dataset was written" in capsys.readouterr().out and not (tmp_path / "none").exists()
    assert len((tmp_path / "q.jsonl").read_text().splitlines()) == 2
    # no texts in the log: refused in one line; another format: refused
    _make_log(tmp_path / "hashed", prompts="hash")
    assert main(["data", "import", str(tmp_path / "hashed"), "--format", "serve-log", "--out", str(tmp_path / "x"),
                 "--prompts-out", str(tmp_path / "h.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "prompts: hash" in err and "texts to replay" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "h.jsonl").exists()
    assert main(["data", "import", str(prompts), "--format", "long", "--out", str(tmp_path / "y"),
                 "--prompts-out", str(tmp_path / "l.jsonl")]) == 2
    assert "--prompts-out" in capsys.readouterr().err
    assert json.loads(prompts.read_text().splitlines()[0]).keys() == {"id", "question"}


def test_prompts_out_is_written_only_after_the_import_succeeds_and_never_over_a_file_unasked(tmp_path, capsys):
    _make_log(tmp_path / "log", feedback=FEEDBACK)
    prompts = tmp_path / "prompts.jsonl"
    # no prices for the costs: the import fails, and nothing is left behind
    assert main(["data", "import", str(tmp_path / "log"), "--format", "serve-log", "--out", str(tmp_path / "ds"),
                 "--prompts-out", str(prompts)]) == 2
    assert not prompts.exists() and not (tmp_path / "ds").exists()
    capsys.readouterr()
    # an existing prompt list is refused, and kept, unless --overwrite
    prompts.write_text("mine\n")
    price_file = tmp_path / "prices.yaml"
    price_file.write_text("a: {input: 1.0, output: 2.0}\n")
    args = ["data", "import", str(tmp_path / "log"), "--format", "serve-log", "--out", str(tmp_path / "ds"),
            "--prompts-out", str(prompts), "--prices", str(price_file)]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and prompts.read_text() == "mine\n"
    assert main([*args, "--overwrite"]) == 0
    assert len(prompts.read_text().splitlines()) == 2
