"""``routerzoo data generate`` against a real OpenAI-compatible HTTP backend on loopback.

The backend is :class:`routerzoo.serving.testing.FakeBackend` answering each question with a
scripted text and token logprobs (chat format), so scores, logprobs, usage tokens, retries and
failures are all checked end to end; the dataset written is then loaded and a logprob-confidence
deferral scorer is evaluated on it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from routerzoo.cli import main
from routerzoo.data.dataset import load_dataset
from routerzoo.data.generate import extract_choice, extract_number, read_questions
from routerzoo.data.importers.mmlu_pro import format_prompt
from routerzoo.errors import DataError
from routerzoo.serving.testing import FakeBackend, ServerThread, free_port

RIGHT, WRONG = math.log(0.95), math.log(0.2)


class ScriptedBackend(FakeBackend):
    """Answers a question whose text contains a key of ``replies`` with that reply; every token of
    the reply gets the reply's logprob (returned when the request asks for logprobs)."""

    def __init__(self, name: str, replies: dict[str, tuple[str, float]]):
        super().__init__(name)
        self.replies = replies

    def _completion(self, request: dict, chat: bool) -> dict:
        out = super()._completion(request, chat)
        content = request["messages"][-1]["content"]
        text, logprob = next((v for k, v in self.replies.items() if k in content), ("no idea", -3.0))
        tokens = text.split(" ")
        out["choices"][0]["message"]["content"] = text
        out["usage"]["completion_tokens"] = len(tokens)
        if request.get("logprobs"):
            out["choices"][0]["logprobs"] = {"content": [
                {"token": t, "logprob": logprob, "bytes": None, "top_logprobs": []} for t in tokens]}
        return out


OPTIONS = ["red", "green", "blue", "yellow"]
# question text -> (gold, reply, logprob): confident answers are right, unsure ones wrong
MC = {
    "Which colour is grass?": ("B", "Grass is green. The answer is (B).", RIGHT),
    "Which colour is the sky?": ("C", "Think... the answer is (C)", RIGHT),
    "Which colour is blood?": ("A", "Answer: A", RIGHT),
    "Which colour is a banana?": ("D", "Bananas are ripe. The answer is (B).", WRONG),
    "Which colour is the sea?": ("C", "Maybe the answer is (A).", WRONG),
    "Which colour is a lemon?": ("D", "I am not sure.", WRONG),
}


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def backend():
    replies = {q: (reply, lp) for q, (_, reply, lp) in MC.items()}
    replies |= {"two plus two": ("2 + 2 = 4. The answer is 4", RIGHT), "seven times six": ("7*6 = 48", WRONG),
                "grams in a kilo": ("There are 1,000 g. #### 1,000", RIGHT)}
    fake = ScriptedBackend("small", replies)
    with ServerThread(fake) as server:
        yield fake, server.url


@pytest.fixture
def mc_questions(tmp_path):
    return write_jsonl(tmp_path / "q.jsonl", [
        {"question_id": 100 + i, "question": q, "options": OPTIONS, "answer": gold, "category": "colours"}
        for i, (q, (gold, _, _)) in enumerate(MC.items())])


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["data", "generate", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_multiple_choice_scores_logprobs_and_deferral_eval(backend, mc_questions, tmp_path, capsys):
    fake, url = backend
    out = tmp_path / "gen"
    rc, stdout, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol",
                                 "--out", out, "--concurrency", 3)
    assert rc == 0, stderr
    assert "generated 6 answers of smol" in stdout and "accuracy 0.500 (choice)" in stdout
    assert "6/6 answered (0 failed)" in stderr  # progress
    sent = fake.received[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 1 and sent["model"] == "smol" and "the answer is (X)" in sent["messages"][0]["content"]

    ds = load_dataset(out)
    df = ds.outcomes.set_index("prompt_id")
    assert sorted(df.index) == [str(100 + i) for i in range(6)]  # question_id is the prompt id, as in the mmlu-pro import
    for i, (q, (_, reply, lp)) in enumerate(MC.items()):
        row = df.loc[str(100 + i)]
        assert row["prompt"] == format_prompt(q, OPTIONS)  # same text as the mmlu-pro importer: joinable
        assert row["quality"] == (1.0 if lp == RIGHT else 0.0), q
        assert row["response"] == reply
        assert np.allclose(row["token_logprobs"], [lp] * len(reply.split(" ")))
        assert row["output_tokens"] == len(reply.split(" ")) and row["input_tokens"] > 0
        assert row["category"] == "colours"
    assert (df["cost"] == 0).all() and any("cost is 0" in n for n in ds.manifest["notes"])
    assert ds.manifest["sources"][0]["scorer"] == "choice"

    # a logprob-confidence deferral scorer evaluated on the generated answers: confident = right
    from routerzoo.evaluation.artifact_eval import evaluate_scorer
    from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence

    report = evaluate_scorer(LogprobConfidence(), ds.outcome_matrix(), model="smol")
    assert report["n_answers"] == 6 and report["auroc"] == pytest.approx(1.0)

    # an existing --out is refused (and left as it was) unless --overwrite
    before = (out / "dataset.json").read_bytes()
    rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol", "--out", out)
    assert rc == 2 and "--overwrite" in stderr and "Traceback" not in stderr
    assert (out / "dataset.json").read_bytes() == before
    rc, _, _ = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol", "--out", out,
                       "--overwrite", "--limit", 2, "--label", "smol-t0")
    assert rc == 0 and len(load_dataset(out).outcomes) == 2 and load_dataset(out).models == ["smol-t0"]


def test_numeric_scorer_inferred_and_prices(backend, tmp_path, capsys):
    _, url = backend
    questions = tmp_path / "gsm.csv"
    questions.write_text("id,question,answer\ng1,What is two plus two?,4\ng2,What is seven times six?,42\n"
                         "g3,How many grams in a kilo?,\"So 1000 g. #### 1000\"\n")
    prices = tmp_path / "prices.yaml"
    prices.write_text("smol: {input: 1.0, output: 2.0}\n")
    out = tmp_path / "gen"
    rc, stdout, stderr = run_cli(capsys, "--questions", questions, "--endpoint", url + "/v1", "--model", "smol",
                                 "--out", out, "--prices", prices)
    assert rc == 0, stderr
    df = load_dataset(out).outcomes.set_index("prompt_id")
    assert df["quality"].to_dict() == {"g1": 1.0, "g2": 0.0, "g3": 1.0}
    expected = (df["input_tokens"].astype(float) * 1.0 + df["output_tokens"].astype(float) * 2.0) / 1e6
    assert np.allclose(df["cost"], expected) and (df["cost"] > 0).all()


def test_failed_request_is_retried_then_reported(backend, mc_questions, tmp_path, capsys):
    fake, url = backend
    fake.script("500")  # one failure: the retry succeeds
    rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol",
                            "--out", tmp_path / "a", "--concurrency", 1)
    assert rc == 0 and "0 failed" in stderr and len(load_dataset(tmp_path / "a").outcomes) == 6
    fake.script("500", "500")  # the first question fails twice: reported with its id, the rest written
    rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol",
                            "--out", tmp_path / "b", "--concurrency", 1, "--retries", 1)
    assert rc == 0, stderr
    assert "question '100' got no answer after 2 attempt(s): HTTP 500: injected failure" in stderr
    ds = load_dataset(tmp_path / "b")
    assert len(ds.outcomes) == 5 and "100" not in set(ds.outcomes["prompt_id"])
    assert (tmp_path / "b" / "failures.csv").read_text().splitlines()[1].startswith("100,2,HTTP 500")
    assert any("1 question(s) got no answer" in n for n in ds.manifest["notes"])


def test_unreachable_endpoint_writes_nothing(mc_questions, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", url, "--model", "smol",
                            "--out", tmp_path / "gen", "--retries", 0)
    assert rc == 2 and "cannot be reached" in stderr and "question '10" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("record, field", [
    ({"id": "x", "answer": "A"}, "question"),
    ({"question": "q?", "answer": "4"}, "id"),
    ({"id": "x", "question": "q?"}, "answer"),
    ({"id": "x", "question": "q?", "answer": "E", "options": ["a", "b"]}, "answer"),
    ({"id": "x", "question": "q?", "answer": "A", "options": "not json"}, "options"),
])
def test_bad_questions_row_is_one_line_error(tmp_path, capsys, record, field):
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "ok", "question": "fine?", "answer": "1"}, record])
    with pytest.raises(DataError) as err:
        read_questions(path)
    assert err.value.row == 2 and err.value.field == field
    rc, _, stderr = run_cli(capsys, "--questions", path, "--endpoint", "http://127.0.0.1:9", "--model", "m",
                            "--out", tmp_path / "gen")
    assert rc == 2 and f"row 2, field '{field}'" in stderr and "Traceback" not in stderr


def test_other_user_errors(tmp_path, capsys, monkeypatch):
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "question": "name a colour", "answer": "blue"},
                                              {"id": 1, "question": "again", "answer": "red"}])
    with pytest.raises(DataError, match="appears twice"):
        read_questions(path)
    path = write_jsonl(tmp_path / "q2.jsonl", [{"id": 1, "question": "name a colour", "answer": "blue"}])
    base = ["--questions", path, "--endpoint", "http://127.0.0.1:9", "--model", "m"]
    for extra, message in ((["--out", tmp_path / "o"], "cannot infer the scorer"),
                           (["--out", tmp_path / "o", "--scorer", "nope"], "choose one of"),
                           (["--out", tmp_path / "o", "--scorer", "choice", "--api-key-env", "RZ_NO_SUCH_KEY"], "RZ_NO_SUCH_KEY"),
                           (["--out", tmp_path / "o", "--scorer", "choice", "--concurrency", 0], "--concurrency must be >= 1")):
        monkeypatch.delenv("RZ_NO_SUCH_KEY", raising=False)
        rc, _, stderr = run_cli(capsys, *base, *extra)
        assert rc == 2 and message in stderr and "Traceback" not in stderr, stderr


def test_extraction():
    assert extract_choice("so the answer is (C).") == "C"
    assert extract_choice("The answer is B, not A") == "B"
    assert extract_choice("Answer: D") == "D"
    assert extract_choice("I pick (E) or maybe A", n_options=4) == "A"
    assert extract_choice("no letters here") is None
    assert extract_number("The answer is $1,234.50.") == 1234.5
    assert extract_number("first 3 then 7") == 7
    assert extract_number("#### -12") == -12
    assert extract_number("none") is None


def test_missing_httpx_names_the_extra(tmp_path, capsys, monkeypatch, mc_questions):
    monkeypatch.setitem(__import__("sys").modules, "httpx", None)  # as if the [serve] extra were not installed
    rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", "http://127.0.0.1:9", "--model", "m",
                            "--out", tmp_path / "gen")
    assert rc == 2 and "pip install 'routerzoo[serve]'" in stderr and not (tmp_path / "gen").exists()


def test_reply_backend_gives_answers_with_logprobs_and_judge_ratings(mc_questions, tmp_path, capsys):
    """``python -m routerzoo.serving.testing --reply ...`` stands in for a model and for a judge, as the
    README's walkthrough uses it: generated answers carry token logprobs and a judge's ratings parse."""
    model = FakeBackend("small", reply="Let me think. The answer is ({letter}).")
    judge = FakeBackend("judge", reply="Rating: [[{rating}]]")
    with ServerThread(model) as ms, ServerThread(judge) as js:
        rc, stdout, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", ms.url, "--model", "small",
                                     "--out", tmp_path / "gen")
        assert rc == 0, stderr
        df = load_dataset(tmp_path / "gen").outcomes
        assert df["token_logprobs"].map(lambda lp: len(lp) == 7 and all(-3 < v <= 0 for v in lp)).all()
        assert set(df["response"]).issubset({f"Let me think. The answer is ({c})." for c in "ABCDEFGHIJ"})
        rc, _, stderr = run_cli(capsys, "--questions", mc_questions, "--endpoint", ms.url, "--model", "small",
                                "--scorer", "judge", "--judge-endpoint", js.url, "--judge-model", "judge",
                                "--out", tmp_path / "judged")
        assert rc == 0, stderr
        judged = load_dataset(tmp_path / "judged").outcomes
        assert judged["quality"].between(0, 1).all()
    # the same model and prompt get the same answer; without --reply the answer names the backend
    body = {"messages": [{"role": "user", "content": "Which colour is grass?"}], "logprobs": True}
    assert model._completion(body, True)["choices"] == model._completion(body, True)["choices"]
    plain = FakeBackend("small")._completion(body, True)["choices"][0]
    assert plain["message"]["content"] == "answer from small" and len(plain["logprobs"]["content"]) == 3
