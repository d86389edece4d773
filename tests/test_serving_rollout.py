"""Shadow and canary challengers in the server (routerzoo/serving/rollout.py), over HTTP on loopback.

The challenger is a copy of the champion's kNN artifact under another name: its decisions must then
agree with the champion's on every request, and the headers tell the two apart by name.
"""

from __future__ import annotations

import shutil
import sqlite3

import httpx
import pytest
from test_serving import MATH, fakes, knn_dir, router, serving  # noqa: F401  (fixtures)

from routerzoo.errors import ConfigError
from routerzoo.serving.config import load_config
from routerzoo.serving.rollout import CanaryConfig, in_canary


@pytest.fixture(scope="module")
def challenger_dir(knn_dir, tmp_path_factory):  # noqa: F811
    target = tmp_path_factory.mktemp("rollout") / "challenger"
    shutil.copytree(knn_dir, target)
    return target


def test_canary_share_is_stable_and_close_to_the_share():
    keys = [f"user-{i}" for i in range(20000)]
    share = sum(in_canary(k, 0.1) for k in keys) / len(keys)
    assert abs(share - 0.1) < 0.01
    assert [in_canary(k, 0.1) for k in keys[:50]] == [in_canary(k, 0.1) for k in keys[:50]]
    assert all(in_canary(k, 1.0) for k in keys[:50])
    assert in_canary("ü\ud800", 1.0)  # a lone surrogate (valid JSON) hashes too


def test_config_sections_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="share"):
        CanaryConfig(version="x", share=0)
    with pytest.raises(ConfigError, match="canary.version"):
        CanaryConfig(share=0.5)
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("shadow: models:/r@challenger\ncanary:\n  version: /tmp/r\n  share: 0.25\n")
    loaded = load_config(cfg)
    assert loaded.shadow == "models:/r@challenger" and loaded.canary.share == 0.25


def test_shadow_decisions_are_logged_off_the_hot_path(router, fakes, challenger_dir, tmp_path):  # noqa: F811
    log_dir = tmp_path / "log"
    texts = [f"{MATH} variant {i}" for i in range(8)] + ["Who won the battle of Hastings?"]
    with serving(router, fakes, shadow=str(challenger_dir), log={"dir": str(log_dir), "flush_interval_s": 0.05}) \
            as (url, state), httpx.Client(base_url=url, timeout=30) as http:
        rids = {}
        for t in texts:
            r = http.post("/v1/chat/completions", json={"model": "routerzoo", "messages": [{"role": "user", "content": t}]})
            assert r.status_code == 200 and r.headers["x-routerzoo-router"] == "knn"
            rids[r.headers["x-routerzoo-request-id"]] = r.headers["x-routerzoo-model"]
        assert state.rollout.shadow.label == "challenger"
    # stopped: the shadow thread finished or dropped what it had; nothing was dropped at this load
    assert state.rollout.dropped == 0
    con = sqlite3.connect(log_dir / "requests.db")
    rows = con.execute("SELECT s.request_id, s.router, s.chosen, s.agree, r.chosen FROM shadow s "
                       "JOIN requests r USING (request_id)").fetchall()
    con.close()
    assert {r[0] for r in rows} == set(rids)
    assert all(r[1] == "challenger" and r[2] == r[4] and r[3] == 1 for r in rows)  # the same router agrees


def _router_for(http: httpx.Client, user: str) -> str:
    """The version that answered one chat request of ``user`` (the x-routerzoo-router header)."""
    r = http.post("/v1/chat/completions", json={"model": "routerzoo", "user": user,
                                                "messages": [{"role": "user", "content": MATH}]})
    assert r.status_code == 200
    return r.headers["x-routerzoo-router"]


def test_canary_routes_a_stable_hash_share_named_in_the_headers(router, fakes, challenger_dir, tmp_path):  # noqa: F811
    with serving(router, fakes, canary={"version": str(challenger_dir), "share": 0.5},
                 log={"dir": str(tmp_path / "log")}) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        users = [f"u{i}" for i in range(16)]
        got = {u: _router_for(http, u) for u in users}
        assert got == {u: "challenger" if in_canary(u, 0.5) else "knn" for u in users}
        assert [_router_for(http, u) for u in users[:4]] == [got[u] for u in users[:4]]  # the same user, the same router
        metrics = http.get("/metrics").text
        assert 'version="challenger"' in metrics and 'version="knn"' in metrics


def test_shadow_and_canary_follow_their_alias_moves(router, fakes, knn_dir, tmp_path):  # noqa: F811
    """Both challengers named by alias: moving an alias hot-reloads that challenger, as it does the champion."""
    import time

    from routerzoo.zoo import tracking
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.run("rollout-test", uri=uri):
        for _ in range(2):
            log_router_model(knn_dir, registered_name="chal")
    set_alias("chal", "challenger", 1)
    set_alias("chal", "canary", 1)
    log_dir = tmp_path / "log"
    with serving(router, fakes, tracking_uri=uri, reload={"poll_interval_s": 0.05}, shadow="models:/chal@challenger",
                 canary={"version": "models:/chal@canary", "share": 0.5},
                 log={"dir": str(log_dir), "flush_interval_s": 0.05}) as (url, state), \
            httpx.Client(base_url=url, timeout=30) as http:
        users = [f"u{i}" for i in range(12)]
        assert {_router_for(http, u) for u in users} == {"knn", "chal@1"}
        assert (state.rollout.shadow.label, state.rollout.canary.label) == ("chal@1", "chal@1")
        set_alias("chal", "challenger", 2)
        set_alias("chal", "canary", 2)
        deadline = time.monotonic() + 30
        while (state.rollout.shadow.version, state.rollout.canary.version) != ("2", "2"):
            assert time.monotonic() < deadline, "the challengers never followed their aliases"
            time.sleep(0.05)
        assert {_router_for(http, u) for u in users} == {"knn", "chal@2"}
        assert state.rollout.shadow.router.loaded_encoder is router.loaded_encoder  # one encoder in memory
    con = sqlite3.connect(log_dir / "requests.db")
    shadowed = {r[0] for r in con.execute("SELECT DISTINCT router FROM shadow")}
    con.close()
    assert shadowed == {"chal@1", "chal@2"}


def test_prompts_off_keeps_every_prompt_out_of_the_store_with_challengers_running(router, fakes, challenger_dir,  # noqa: F811
                                                                                 tmp_path, caplog):
    """The shadow and the canary see the text too: none of it may reach the log's files, WAL included."""
    import time

    secret = "Integrate the walrus polynomial 8123 over the unit disc."
    log_dir = tmp_path / "log"

    def grep() -> list[str]:
        hits = []
        for p in log_dir.iterdir():
            blob = p.read_bytes()
            if b"walrus" in blob or secret.encode("utf-16-le") in blob or secret.encode("utf-16-be") in blob:
                hits.append(p.name)
        return hits

    with serving(router, fakes, shadow=str(challenger_dir), canary={"version": str(challenger_dir), "share": 0.5},
                 log={"dir": str(log_dir), "flush_interval_s": 0.05}) as (url, state), \
            httpx.Client(base_url=url, timeout=30) as http:
        rids, by_champion = [], 0
        for i in range(12):
            r = http.post("/v1/chat/completions", json={"model": "routerzoo", "user": f"u{i}",
                                                        "messages": [{"role": "user", "content": f"{secret} {i}"}]})
            assert r.status_code == 200
            rids.append(r.headers["x-routerzoo-request-id"])
            by_champion += r.headers["x-routerzoo-router"] == "knn"
        assert 0 < by_champion < 12  # both the champion (shadowed) and the canary routed some
        assert http.post("/v1/feedback", json={"request_id": rids[0], "reward": 1}).status_code == 200

        def written() -> tuple[int, int]:
            con = sqlite3.connect(f"file:{log_dir / 'requests.db'}?mode=ro", uri=True)
            try:
                return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("requests", "shadow"))
            finally:
                con.close()

        deadline = time.monotonic() + 10
        while written() != (12, by_champion):  # every record and every shadow decision is in the files
            assert time.monotonic() < deadline, written()
            time.sleep(0.05)
        assert sorted(p.name for p in log_dir.iterdir()) == ["requests.db", "requests.db-shm", "requests.db-wal"]
        assert grep() == []  # while the server runs: the WAL holds the newest rows
    assert grep() == []  # and after the checkpoint on stop
    assert "walrus" not in caplog.text  # nor the server's own log


def test_challenger_alias_not_set_yet_is_said_calmly_and_followed(router, fakes, knn_dir, tmp_path, caplog):  # noqa: F811
    """The README's serve.yaml names @challenger before any version has it: start-up and every poll say so
    at INFO (no error), and the challenger comes in once the alias is set."""
    import logging
    import time

    from routerzoo.zoo import tracking
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracking.run("rollout-test", uri=uri):
        log_router_model(knn_dir, registered_name="chal")
    caplog.set_level(logging.INFO, logger="routerzoo")
    with serving(router, fakes, tracking_uri=uri, reload={"poll_interval_s": 0.05}, shadow="models:/chal@challenger",
                 canary={"version": "models:/nobody@canary", "share": 0.5}) as (url, state):
        time.sleep(0.3)  # a few polls
        assert state.rollout.shadow is None and state.rollout.canary is None
        loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("routerzoo")]
        assert not loud, loud
        said = [r.getMessage() for r in caplog.records if "has no version yet" in r.getMessage()]
        assert len(said) == 2 and "it comes in when the alias is set" in said[0]
        set_alias("chal", "challenger", 1)
        deadline = time.monotonic() + 30
        while state.rollout.shadow is None:
            assert time.monotonic() < deadline, "the shadow never came in"
            time.sleep(0.05)
        assert state.rollout.shadow.label == "chal@1"
