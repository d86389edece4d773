"""The LLM judge (routerzoo/data/judge.py) against a scripted OpenAI-compatible test backend on loopback."""

from __future__ import annotations

import json
import re

import pytest

from routerzoo.cli import main
from routerzoo.data.dataset import load_dataset
from routerzoo.data.judge import Judge, JudgeConfig, parse_rating, parse_verdict, read_cache
from routerzoo.errors import ConfigError
from routerzoo.serving.testing import FakeBackend, ServerThread


class JudgeBackend(FakeBackend):
    """Answers questions (well when the question says "easy") and judges answers that contain "good"."""

    def __init__(self):
        super().__init__("judge")
        self.biased = False  # always prefers the first position
        self.garbled = False

    def _completion(self, request: dict, chat: bool) -> dict:
        body = super()._completion(request, chat)
        text = self._text(request, chat)
        if "Assistant A's Answer" in text:
            a = re.search(r"A's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
            b = re.search(r"B's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
            verdict = "A" if self.biased else ("A" if "good" in a and "good" not in b else
                                               "B" if "good" in b and "good" not in a else "C")
            reply = f"Both are answers. [[{verdict}]]"
        elif "[Question]" in text:
            answer = re.search(r"Assistant's Answer\]\n(.*?)\n\[The End", text, re.S).group(1)
            reply = "no idea" if self.garbled else f"Fine. Rating: [[{9 if 'good' in answer else 3}]]"
        else:
            reply = "a good answer" if "easy" in text else "a poor answer"
        body["choices"][0]["message"]["content"] = reply
        return body


@pytest.fixture
def judge_backend():
    backend = JudgeBackend()
    with ServerThread(backend) as server:
        yield backend, server.url


def test_score_mode_rates_caches_and_resumes(judge_backend, tmp_path):
    backend, url = judge_backend
    cfg = JudgeConfig(url, "judge-model", cache=str(tmp_path / "cache.jsonl"), retries=1)
    items = [("1", "Q one", "a good answer", None), ("2", "Q two", "a poor answer", "42")]
    verdicts = Judge(cfg).score(items)
    assert [(v.id, v.rating, v.error) for v in verdicts] == [("1", 9.0, None), ("2", 3.0, None)]
    assert verdicts[0].score == pytest.approx(8 / 9) and verdicts[1].score == pytest.approx(2 / 9)
    assert "[Reference Answer]\n42" in backend.received[-1]["messages"][-1]["content"] \
        or "[Reference Answer]\n42" in backend.received[-2]["messages"][-1]["content"]
    asked = backend.count
    again = Judge(cfg)
    assert [v.score for v in again.score(items)] == [v.score for v in verdicts]
    assert backend.count == asked and again.asked == 0  # all from the cache
    # a run killed mid-write leaves a torn last line: skipped, and the next append starts a new line
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"key": "abc", "te')
    more = Judge(cfg).score(items + [("3", "Q three", "good", None)])
    assert more[2].rating == 9.0 and backend.count == asked + 1
    assert len(read_cache(tmp_path / "cache.jsonl")) == 3


def test_failures_are_retried_and_unparsable_verdicts_are_errors(judge_backend):
    backend, url = judge_backend
    backend.script("500", "429:0")
    v, = Judge(JudgeConfig(url, "j", retries=2)).score([("1", "Q", "good", None)])
    assert v.rating == 9.0
    backend.garbled = True
    v, = Judge(JudgeConfig(url, "j", retries=0)).score([("1", "Q", "good", None)])
    assert v.score is None and "no rating" in v.error


def test_pairwise_judges_both_orders(judge_backend):
    backend, url = judge_backend
    judge = Judge(JudgeConfig(url, "j", mode="pairwise"))
    items = [("p1", "Q", "good", "poor"), ("p2", "Q", "poor", "good"), ("p3", "Q", "poor", "poor")]
    backend.received.clear()
    assert [(v.winner, v.consistent) for v in judge.compare(items)] == [("a", True), ("b", True), ("tie", True)]
    # the requests go out concurrently, in no fixed order: find them by their answers. p1 and p2 ask
    # the same two texts (both orders), p3's two orders are one text: each distinct text is asked once
    sent = [m["messages"][-1]["content"] for m in backend.received]
    orders = sorted(("A's Answer]\ngood" in t, "B's Answer]\ngood" in t) for t in sent)
    assert orders == [(False, False), (False, True), (True, False)]
    backend.biased = True  # prefers whatever comes first: the swap exposes it
    assert [(v.winner, v.consistent) for v in judge.compare(items[:1])] == [("tie", False)]


def test_config_is_checked():
    with pytest.raises(ConfigError, match="mode"):
        JudgeConfig("http://x", "m", mode="vote")
    with pytest.raises(ConfigError, match="response"):
        JudgeConfig("http://x", "m", rubric="rate {question}")
    with pytest.raises(ConfigError, match="endpoint"):
        JudgeConfig("ftp://x", "m")
    assert parse_rating("Rating: [[7]] then [[11]]", 10) is None and parse_rating("Rating: 4", 5) == 4
    assert parse_verdict("[[B]] no, [[C]]") == "tie" and parse_verdict("B") is None


def test_generate_with_judge_scorer(judge_backend, tmp_path, capsys):
    backend, url = judge_backend
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(r) for r in [
        {"id": "e1", "question": "An easy one?"}, {"id": "h1", "question": "A hard one?", "answer": "7"}]) + "\n")
    out = tmp_path / "ds"
    argv = ["data", "generate", "--questions", str(questions), "--endpoint", url, "--model", "m",
            "--out", str(out), "--scorer", "judge", "--judge-model", "judge-model", "--val", "0", "--test", "0"]
    assert main(argv) == 0
    ds = load_dataset(out)
    q = ds.outcomes.set_index("prompt_id")["quality"]
    assert q["e1"] == pytest.approx(8 / 9) and q["h1"] == pytest.approx(2 / 9)
    src = ds.manifest["sources"][0]
    assert src["scorer"] == "judge:judge-model" and src["judge"]["model"] == "judge-model"
    assert (tmp_path / "ds.judge-cache.jsonl").exists()
    asked = backend.count
    assert main(argv + ["--overwrite"]) == 0
    assert backend.count == asked + 2  # the two questions again, but no judge request: cached
    capsys.readouterr()
    assert main(argv[:-6] + ["--out", str(tmp_path / "x"), "--scorer", "judge"]) == 2
    assert "--judge-model" in capsys.readouterr().err
