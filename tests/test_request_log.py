"""The request log and feedback store (routerzoo/serving/request_log.py), without a server."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from routerzoo.data.request_log_format import read_meta
from routerzoo.errors import ConfigError
from routerzoo.serving.config import load_config
from routerzoo.serving.request_log import (
    FeedbackRefused,
    RequestLog,
    RequestLogConfig,
    close_record,
    note,
    open_record,
    parse_feedback,
    segment_files,
)

SECRET = "my very private question about zebras 7319"


def _record(rid: str, text: str = SECRET, **extra) -> dict:
    return {"request_id": rid, "time": 1.0, "endpoint": "chat", "requested_model": "routerzoo", "router": "r@1",
            "router_version": "1", "scores": {"a": 0.25, "b": 0.75}, "chosen": "b", "model": "b",
            "fallbacks": [], "input_tokens": 5, "output_tokens": 7, "cost": 1e-5, "latency_ms": 3.5,
            "status": 200, "stream": False, "text": text, **extra}


def _all_bytes(directory) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


@pytest.fixture
def make_log(tmp_path):
    logs = []

    def make(**kw) -> RequestLog:
        lg = RequestLog(RequestLogConfig(dir=str(tmp_path / "log"), flush_interval_s=0.02, **kw))
        logs.append(lg)
        return lg

    yield make
    for lg in logs:
        lg.stop()


def _rows(directory, sql: str) -> list:
    out = []
    for seg in segment_files(directory):
        con = sqlite3.connect(seg)
        out += con.execute(sql).fetchall()
        con.close()
    return out


def test_config_section_is_typed_and_validated(tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("log:\n  dir: /tmp/x\n  prompts: hash\n")
    assert load_config(cfg).log.prompts == "hash"
    assert load_config(None).log is None
    cfg.write_text("log:\n  dir: /tmp/x\n  prompts: everything\n")
    with pytest.raises(ConfigError, match="prompts"):
        load_config(cfg)
    cfg.write_text("log:\n  prompts: full\n")
    with pytest.raises(ConfigError, match="log.dir"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="queue_size"):
        RequestLogConfig(dir="x", queue_size=0)


def test_records_are_written_with_every_field_and_no_prompt_when_off(make_log, tmp_path):
    lg = make_log()
    lg.start()
    assert lg.log(_record("r1")) and lg.log(_record("r2", fallbacks=["a"], status=502))
    lg.stop()
    d = tmp_path / "log"
    rows = _rows(d, "SELECT request_id, scores, chosen, model, fallbacks, input_tokens, output_tokens, cost, "
                    "latency_ms, status, stream, prompt, prompt_hash FROM requests ORDER BY request_id")
    assert [r[0] for r in rows] == ["r1", "r2"]
    assert json.loads(rows[0][1]) == {"a": 0.25, "b": 0.75}
    assert rows[0][2:11] == ("b", "b", "[]", 5, 7, 1e-5, 3.5, 200, 0)
    assert json.loads(rows[1][4]) == ["a"] and rows[1][9] == 502
    assert rows[0][11] is None and rows[0][12] is None
    assert SECRET.encode() not in _all_bytes(d)
    assert read_meta(d / "requests.db")["prompts"] == "off"


def test_prompt_hash_is_salted_sha256_and_full_keeps_the_text(make_log, tmp_path, monkeypatch):
    monkeypatch.setenv("RZ_TEST_SALT", "pepper")
    lg = make_log(prompts="hash", salt_env="RZ_TEST_SALT")
    lg.start()
    lg.log(_record("h1"))
    lg.stop()
    d = tmp_path / "log"
    (h, p), = _rows(d, "SELECT prompt_hash, prompt FROM requests")
    assert p is None and h == hashlib.sha256(b"pepper" + SECRET.encode()).hexdigest()
    assert SECRET.encode() not in _all_bytes(d)
    full = make_log(prompts="full")  # a new mode starts a new segment: one mode per segment
    full.start()
    full.log(_record("f1"))
    full.stop()
    assert sorted(_rows(d, "SELECT request_id, prompt FROM requests")) == [("f1", SECRET), ("h1", None)]
    assert [read_meta(s)["prompts"] for s in segment_files(d)] == ["hash", "full"]


def test_hash_without_salt_env_keeps_a_private_salt_file(make_log, tmp_path):
    lg = make_log(prompts="hash")
    lg.start()
    lg.stop()
    salt = tmp_path / "log" / "salt"
    assert salt.stat().st_mode & 0o077 == 0 and len(salt.read_text()) == 64


def test_a_full_queue_drops_and_counts_instead_of_blocking(make_log):
    lg = make_log(queue_size=2)  # not started: nothing drains the queue
    assert lg.log(_record("1")) and lg.log(_record("2"))
    assert not lg.log(_record("3"))
    assert lg.dropped == 1


def test_feedback_is_committed_when_acknowledged_and_checked(make_log, tmp_path):
    lg = make_log()
    lg.start()
    lg.log(_record("r1"))
    lg.log(_record("r2", model="a"))
    row = lg.add_feedback(parse_feedback({"request_id": "r1", "reward": 1})).result(5)
    assert row["kind"] == "reward" and row["reward"] == 1.0 and row["model"] == "b"
    # committed: another connection sees it at once, while the writer is still running
    con = sqlite3.connect(tmp_path / "log" / "requests.db")
    assert con.execute("SELECT request_id, reward, source FROM feedback").fetchall() == [("r1", 1.0, "client")]
    con.close()
    pref = lg.add_feedback(parse_feedback({"request_id": "r1", "other_request_id": "r2", "winner": "b",
                                           "source": "judge"})).result(5)
    assert pref["kind"] == "preference" and pref["winner"] == "b"
    with pytest.raises(FeedbackRefused) as exc:
        lg.add_feedback(parse_feedback({"request_id": "r1", "reward": 0.5})).result(5)
    assert exc.value.status == 409
    with pytest.raises(FeedbackRefused) as exc:
        lg.add_feedback(parse_feedback({"request_id": "nope", "reward": 0.5})).result(5)
    assert exc.value.status == 404
    # a judge may rate what a client rated
    assert lg.add_feedback(parse_feedback({"request_id": "r1", "reward": 0.5, "source": "judge"})).result(5)["id"]


@pytest.mark.parametrize("body, param", [
    ([1], None),
    ({"reward": 1}, "request_id"),
    ({"request_id": "r", "reward": 1.5}, "reward"),
    ({"request_id": "r", "reward": True}, "reward"),
    ({"request_id": "r"}, "reward"),
    ({"request_id": "r", "reward": 1, "winner": "a"}, "reward"),
    ({"request_id": "r", "other_request_id": "r", "winner": "a"}, "other_request_id"),
    ({"request_id": "r", "other_request_id": "s", "winner": "c"}, "winner"),
    ({"request_id": "r", "reward": 1, "source": "robot"}, "source"),
    ({"request_id": "r", "reward": 1, "rating": 3}, "rating"),
])
def test_bad_feedback_is_a_400_naming_the_field(body, param):
    with pytest.raises(FeedbackRefused) as exc:
        parse_feedback(body)
    assert exc.value.status == 400 and exc.value.param == param


def test_rotation_bounds_the_log_and_feedback_finds_rotated_requests(make_log, tmp_path):
    lg = make_log(max_segment_mb=0.02, keep_segments=2, max_tracked=1)
    lg.start()
    for i in range(6):
        for j in range(60):
            lg.log(_record(f"r{i}-{j}", extra={"pad": "x" * 200}))
        lg.add_feedback(parse_feedback({"request_id": f"r{i}-0", "reward": 0.5})).result(5)  # waits for the write
    d = tmp_path / "log"
    segs = segment_files(d)
    assert 2 <= len(segs) <= 3 and segs[-1].name == "requests.db"
    assert all(s.name.startswith("requests.0") for s in segs[:-1])
    # the newest rotated segment (a rotation may be under way, but deletes only the oldest) holds an id
    # that is neither recent nor in the current segment
    con = sqlite3.connect(segs[-2])
    old = con.execute("SELECT request_id FROM requests ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    con.close()
    assert lg.add_feedback(parse_feedback({"request_id": old, "reward": 1, "source": "judge"})).result(5)["reward"] == 1


def test_note_fills_the_current_record_only():
    note(model="ignored")  # no record: nothing happens
    token = open_record(request_id="x")
    note(model="a", fallbacks=["b"])
    assert close_record(token) == {"request_id": "x", "model": "a", "fallbacks": ["b"]}
