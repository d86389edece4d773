"""Issue 20's must-show, on loopback: served traffic becomes a challenger that proves itself on that
traffic before it is promoted, and the server hot-reloads it without failing a request.

1. A kNN champion (``models:/support@champion``) serves two fake backends, ``small`` and ``big``;
   it learnt from a benchmark where ``small`` is as good everywhere, so it always picks ``small``.
2. 500 requests (100 prompts, each from 5 users), with client rewards on 200: the users find that
   ``small`` fails math (reward 0), which ``big`` solves.
3. ``data import --format serve-log`` turns the log into a dataset and a prompt list; ``data
   generate --scorer judge`` replays the prompts on both models through the server and a fake judge
   rates the answers; a kNN challenger is trained on that and registered as ``@challenger``, which
   the server shadows at once (it follows the alias); ``zoo compare --traffic`` reports the
   agreement. ``zoo promote --alias canary`` then moves the canary's alias: half the users meet it.
4. ``zoo promote --if-better-than champion --traffic LOG``: refused with a bar it cannot clear,
   promoted on the paired mean reward of the traffic otherwise.
5. The server hot-reloads the new champion under load: no request fails.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import HISTORY, MATH
from test_serving import wait_ready

from routerzoo.cli import main
from routerzoo.serving.app import create_app
from routerzoo.serving.config import load_config
from routerzoo.serving.rollout import in_canary
from routerzoo.serving.testing import FakeBackend, ServerThread

#: judge ratings (1..10) and client rewards ((rating − 1) / 9) by (topic, model): small fails math
RATING = {("math", "small"): 1, ("math", "big"): 10, ("history", "small"): 10, ("history", "big"): 5}
USERS = [f"user-{i}" for i in range(5)]


def _prompts(n: int, prefix: str, seed: int) -> dict[str, str]:
    """n prompts per topic → topic; a ``[ticket m…]`` / ``[ticket h…]`` marker lets the judge tell them apart."""
    rng = np.random.default_rng(seed)
    out = {}
    for topic, templates in (("math", MATH), ("history", HISTORY)):
        for i in range(n):
            a, b, c = rng.integers(1, 10, size=3)
            out[templates[i % len(templates)].format(a=a, b=b, c=c) + f" [ticket {topic[0]}{prefix}{i}]"] = topic
    return out


def _topic(text: str) -> str:
    return "math" if re.search(r"\[ticket m", text) else "history"


def reward(prompt: str, model: str) -> float:
    return (RATING[(_topic(prompt), model)] - 1) / 9


class FakeJudge(FakeBackend):
    """Rates the answer in a judge prompt by the question's topic and the model that answered."""

    def _completion(self, request: dict, chat: bool) -> dict:
        out = super()._completion(request, chat)
        text = self._text(request, chat)
        model = "big" if "answer from big" in text else "small"
        out["choices"][0]["message"]["content"] = f"Rating: [[{RATING[(_topic(text), model)]}]]"
        return out


def _train_knn(data, out):
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    return train_router("knn", KNNConfig(k=5), data, out, tracking=TrackingConfig(enabled=False),
                        progress=False).router_dir


def _champion_data(root):
    """The benchmark the champion learnt from: ``small`` as good as ``big`` on both topics, 100× cheaper."""
    from routerzoo.data.dataset import make_dataset, save_dataset

    rows = [{"prompt": p, "model": m, "quality": q, "cost": c, "category": t}
            for p, t in _prompts(40, "b", seed=1).items() for m, q, c in (("small", 1.0, 1e-5), ("big", 0.5, 1e-3))]
    df = pd.DataFrame(rows)
    df["prompt_id"] = [f"b{i // 2}" for i in range(len(df))]
    return save_dataset(make_dataset(df, name="benchmark"), root / "benchmark")


@pytest.mark.slow
def test_traffic_trains_a_challenger_that_is_shadowed_canaried_and_promoted_with_no_failed_request(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_dir = tmp_path / "log"

    def cli(*args) -> tuple[int, str, str]:
        code = main(list(map(str, args)))
        out = capsys.readouterr()
        return code, out.out, out.err

    champion = _train_knn(_champion_data(tmp_path), tmp_path / "champion")
    assert cli("zoo", "register", champion, "--name", "support", "--alias", "champion", "--tracking-uri", uri)[0] == 0
    traffic = _prompts(50, "t", seed=2)  # 100 prompts the users ask
    statuses: list[int] = []
    small, big, judge = FakeBackend("small"), FakeBackend("big"), FakeJudge("judge")
    with ServerThread(small) as ts, ServerThread(big) as tb, ServerThread(judge) as tj:
        config = load_config(None, {
            "router": "models:/support@champion", "tracking_uri": uri, "reload": {"poll_interval_s": 0.1},
            "backends": {"small": {"base_url": ts.url + "/v1", "prices": {"input": 0.1, "output": 0.4}},
                         "big": {"base_url": tb.url + "/v1", "prices": {"input": 5.0, "output": 15.0}}},
            # both follow their alias: whatever @challenger / @canary point at next is loaded while serving
            "shadow": "models:/support@challenger", "canary": {"version": "models:/support@canary", "share": 0.5},
            "log": {"dir": str(log_dir), "prompts": "full", "flush_interval_s": 0.05},
            "logging": {"level": "error"}})
        app = create_app(config)
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            wait_ready(server.url, timeout=90)
            state = app.state.routerzoo

            def ask(prompt: str, user: str, rate: bool) -> httpx.Response:
                r = http.post("/v1/chat/completions", json={"model": "routerzoo", "user": user,
                                                            "messages": [{"role": "user", "content": prompt}]})
                statuses.append(r.status_code)
                if rate and r.status_code == 200:
                    fb = http.post("/v1/feedback", json={"request_id": r.headers["x-routerzoo-request-id"],
                                                         "reward": reward(prompt, r.headers["x-routerzoo-model"])})
                    assert fb.status_code == 200, fb.text
                return r

            def wait_for(what, check, timeout=30.0):
                deadline = time.monotonic() + timeout
                while not check():
                    assert time.monotonic() < deadline, f"timed out waiting for {what}"
                    time.sleep(0.05)

            # 2. 500 requests, rewards on 200 of them
            jobs = [(p, u, k < 200) for k, (p, u) in enumerate((p, u) for u in USERS for p in traffic)]
            with ThreadPoolExecutor(8) as pool:
                answered = list(pool.map(lambda job: ask(*job), jobs))
            assert len(answered) == 500 and {r.headers["x-routerzoo-model"] for r in answered} == {"small"}

            # 3. the log becomes a dataset and a prompt list; replayed on both models and judged
            code, out, err = cli("data", "import", log_dir, "--format", "serve-log", "--out", tmp_path / "traffic",
                                 "--prompts-out", tmp_path / "prompts.jsonl")
            assert code == 0, err
            assert "wrote 100 logged prompt(s)" in out and "imported 100 prompts, 1 models" in out, out
            for model in ("small", "big"):
                code, out, err = cli("data", "generate", "--questions", tmp_path / "prompts.jsonl",
                                     "--endpoint", server.url, "--model", model, "--scorer", "judge",
                                     "--judge-endpoint", tj.url, "--judge-model", "judge", "--concurrency", "8",
                                     "--out", tmp_path / f"judged-{model}")
                assert code == 0, err
            code, out, err = cli("data", "import", tmp_path / "judged-small" / "outcomes.parquet",
                                 tmp_path / "judged-big" / "outcomes.parquet", "--format", "long",
                                 "--out", tmp_path / "judged")
            assert code == 0 and "imported 100 prompts, 2 models" in out, err
            challenger = _train_knn(tmp_path / "judged", tmp_path / "challenger")
            code, out, err = cli("zoo", "register", challenger, "--name", "support", "--alias", "challenger",
                                 "--tracking-uri", uri)
            assert code == 0 and "registered support/2 as @challenger" in out, err
            # ... shadowed as soon as @challenger exists
            wait_for("the shadow", lambda: state.rollout.shadow is not None)
            assert state.rollout.shadow.label == "support@2"
            for p in traffic:
                assert ask(p, USERS[0], rate=False).headers["x-routerzoo-router"] == "support@1"
            wait_for("the shadow decisions", lambda: _count(log_dir, "SELECT count(*) FROM shadow") >= 100)
            code, out, err = cli("zoo", "compare", "support@challenger", "support@champion", "--traffic", log_dir,
                                 "--tracking-uri", uri)
            assert code == 0, err
            agreement = float(re.search(r"agreement with support@1\s+([\d.]+)", out).group(1))
            shadowed = float(re.search(r"agreement logged as a shadow\s+([\d.]+)", out).group(1))
            assert 0.4 <= agreement <= 0.6 and abs(shadowed - agreement) < 0.1, out  # it differs on math

            # ... then canaried: half the users meet it, and rate its answers
            assert cli("zoo", "promote", "support/2", "--alias", "canary", "--tracking-uri", uri)[0] == 0
            wait_for("the canary", lambda: state.rollout.canary is not None)
            inside = next(u for u in USERS if in_canary(u, 0.5))
            outside = next(u for u in USERS if not in_canary(u, 0.5))
            for p in traffic:
                assert ask(p, inside, rate=True).headers["x-routerzoo-router"] == "support@2"
                assert ask(p, outside, rate=True).headers["x-routerzoo-router"] == "support@1"

            # 4. promotion gated on the traffic, while requests keep coming
            stop = threading.Event()

            def load() -> None:
                i = 0
                while not stop.is_set():
                    ask(list(traffic)[i % 100], outside, rate=False)
                    i += 1

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            try:
                gate = ("--alias", "champion", "--if-better-than", "champion", "--traffic", log_dir,
                        "--tracking-uri", uri)
                code, out, err = cli("zoo", "promote", "support/2", *gate, "--min-improvement", "0.9")
                # one line from the command (the rest of stderr is the server's log, in this same process)
                refusal = [line for line in err.splitlines() if line.startswith("routerzoo:")]
                assert code == 1 and len(refusal) == 1 and "paired CI [" in refusal[0], err
                assert "lower bound must exceed +0.9000" in refusal[0] and "50 where the choices differ" in refusal[0]
                code, out, err = cli("zoo", "promote", "support/2", *gate)
                assert code == 0, err
                assert re.search(r"mean_reward 1\.0000 vs 0\.\d+ .*paired CI \[\+", out), out
                # 5. the server hot-reloads the new champion
                wait_for("the hot reload", lambda: state.holder.current.version == "2")
                after = len(statuses)
                wait_for("requests on the new champion", lambda: len(statuses) > after + 20)
            finally:
                stop.set()
                loader.join(30)
            assert ask(list(traffic)[0], outside, rate=False).headers["x-routerzoo-router"] == "support@2"
    assert len(statuses) >= 820 and set(statuses) == {200}  # not one request failed (500 + 100 + 200 + the load)
    record = json.loads(_tags(uri)["routerzoo.promotion.champion"])
    assert record["n_differ"] >= 40 and record["ci"][0] > 0 and record["traffic"] == str(log_dir)


def _count(log_dir, sql: str) -> int:
    con = sqlite3.connect(f"file:{log_dir / 'requests.db'}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _tags(uri: str) -> dict:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri).get_model_version("support", "2").tags
