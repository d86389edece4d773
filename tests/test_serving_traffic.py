"""The request log and ``POST /v1/feedback`` for every router, in the server, over HTTP on loopback.

The kNN router and the fake backends are test_serving.py's; a crash is a real SIGKILL of a
``routerzoo serve`` process under load.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
from test_serving import MATH, backends_for, fakes, knn_dir, router, serving, wait_ready  # noqa: F401  (fixtures)
from test_serving_feedback import bandit_dir, encoder, fresh_router  # noqa: F401  (fixtures)

from routerzoo.data.importers import import_files
from routerzoo.data.request_log_format import segment_files
from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.testing import ServerThread, free_port

SECRET = "Integrate the zebra polynomial 4417 over the unit disc."


def _chat(http: httpx.Client, text: str, model: str = "routerzoo", **extra) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}],
                                                   **extra})


def test_requests_are_logged_and_feedback_is_stored_for_any_router(router, fakes, tmp_path):  # noqa: F811
    log_dir = tmp_path / "log"
    with serving(router, fakes, log={"dir": str(log_dir), "flush_interval_s": 0.05}) as (url, state), \
            httpx.Client(base_url=url, timeout=30) as http:
        routed = [_chat(http, f"{SECRET} ({i})") for i in range(6)]
        assert all(r.status_code == 200 for r in routed)
        streamed = _chat(http, SECRET, stream=True, stream_options={"include_usage": True})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        by_name = [_chat(http, SECRET, model=m) for m in ("math-small", "big")]
        missing = _chat(http, SECRET, model="nope")
        assert missing.status_code == 404
        rids = [r.headers["x-routerzoo-request-id"] for r in routed]
        ok = http.post("/v1/feedback", json={"request_id": rids[0], "reward": 0.75})
        assert ok.status_code == 200, ok.text
        assert ok.json()["kind"] == "reward" and ok.json()["model"] == routed[0].headers["x-routerzoo-model"]
        a, b = (r.headers["x-routerzoo-request-id"] for r in by_name)
        pref = http.post("/v1/feedback", json={"request_id": a, "other_request_id": b, "winner": "b",
                                               "source": "judge"})
        assert pref.status_code == 200 and pref.json()["kind"] == "preference"
        assert http.post("/v1/feedback", json={"request_id": rids[0], "reward": 0.1}).status_code == 409
        assert http.post("/v1/feedback", json={"request_id": "f" * 32, "reward": 0.1}).status_code == 404
        bad = http.post("/v1/feedback", json={"request_id": rids[1], "reward": 3})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "reward"
        metrics = http.get("/metrics").text
        assert 'routerzoo_version_requests_total{status="2xx",version="knn"}' in metrics
        assert 'routerzoo_version_reward_count_total{version="knn"} 1.0' in metrics
    # stopped: every record written
    con = sqlite3.connect(log_dir / "requests.db")
    rows = {r[0]: r for r in con.execute(
        "SELECT request_id, status, router, chosen, model, scores, input_tokens, output_tokens, latency_ms, stream, "
        "requested_model, prompt, prompt_hash FROM requests")}
    assert len(rows) == 10
    first = rows[rids[0]]
    assert first[1:3] == (200, "knn") and first[3] == first[4] == routed[0].headers["x-routerzoo-model"]
    assert set(json.loads(first[5])) == set(router.models) and first[6] > 0 and first[7] == 3 and first[8] > 0
    assert rows[streamed.headers["x-routerzoo-request-id"]][9] == 1
    assert rows[missing.headers["x-routerzoo-request-id"]][1] == 404
    assert rows[a][2] is None and rows[a][4] == "math-small" and rows[a][10] == "math-small"  # by name: not routed
    assert all(r[11] is None and r[12] is None for r in rows.values())
    assert con.execute("SELECT count(*) FROM feedback").fetchone() == (2,)
    con.close()
    # prompts: off (the default): no prompt text anywhere in the log's files
    blob = b"".join(p.read_bytes() for p in log_dir.iterdir() if p.is_file())
    assert b"zebra polynomial" not in blob and SECRET.encode("utf-16-le") not in blob


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_feedback(knn_dir, fakes, tmp_path):  # noqa: F811
    log_dir = tmp_path / "log"
    backends = backends_for(fakes)
    config = tmp_path / "serve.yaml"
    config.write_text("backends:\n" + "".join(f"  {m}:\n    base_url: {b['base_url']}\n" for m, b in backends.items())
                      + f"log:\n  dir: {log_dir}\n  prompts: full\n  flush_interval_s: 0.5\n"
                      + "logging:\n  level: warning\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.Popen([sys.executable, "-m", "routerzoo", "serve", str(knn_dir), "--config", str(config),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    acked: list[int] = []
    stop = threading.Event()
    try:
        wait_ready(url, timeout=90)

        def load() -> None:  # keeps requests in flight when the kill comes
            with httpx.Client(base_url=url, timeout=10) as h:
                i = 0
                while not stop.is_set():
                    try:
                        _chat(h, f"{MATH} load {i}")
                    except httpx.HTTPError:
                        return
                    i += 1

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(40):
                r = _chat(http, f"{MATH} rated {i}")
                fb = http.post("/v1/feedback", json={"request_id": r.headers["x-routerzoo-request-id"],
                                                     "reward": (i % 5) / 4})
                assert fb.status_code == 200, fb.text
                acked.append(fb.json()["id"])
        proc.send_signal(signal.SIGKILL)  # right after the last 200, with load in flight
        proc.wait(10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # the log opens, is consistent, and holds every acknowledged feedback
    db, = segment_files(log_dir)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {r[0] for r in con.execute("SELECT id FROM feedback")}
    con.close()
    assert set(acked) <= stored and len(acked) == 40
    # and it is training data (the fake backends have no list price: the server logged tokens, no cost)
    prices = tmp_path / "prices.yaml"
    prices.write_text("".join(f"{m}: {{input: 1.0, output: 2.0}}\n" for m in backends))
    ds = import_files([log_dir], "serve-log", prices=prices)
    assert len(ds.outcomes) >= 30 and ds.outcomes["quality"].between(0, 1).all()


def test_a_bandit_still_learns_online_from_feedback_kept_in_the_log(bandit_dir, encoder, fakes, tmp_path):  # noqa: F811
    bandit = fresh_router(bandit_dir, encoder)
    base = bandit.counts_.sum()
    url = fakes["A"][1].url + "/v1"
    overrides = {"backends": {m: {"base_url": url} for m in bandit.models},
                 "feedback": {"state_dir": str(tmp_path / "fb"), "flush_every": 1, "flush_interval_s": 0.05},
                 "log": {"dir": str(tmp_path / "log"), "flush_interval_s": 0.05}}
    app = create_app(load_config(None, overrides), router=bandit)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        wait_ready(server.url)
        rid = _chat(http, MATH).headers["x-routerzoo-request-id"]
        r = http.post("/v1/feedback", json={"request_id": rid, "reward": 1.0})
        assert r.status_code == 200 and r.json()["learnt"] is True
        state = app.state.routerzoo
        deadline = time.monotonic() + 10
        while state.feedback.router.counts_.sum() == base:
            assert time.monotonic() < deadline, "the bandit never learnt the reward"
            time.sleep(0.05)
    con = sqlite3.connect(tmp_path / "log" / "requests.db")
    assert con.execute("SELECT request_id, reward FROM feedback").fetchall() == [(rid, 1.0)]
    con.close()
