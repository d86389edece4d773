"""Team mode: `mlflow server` on a PostgreSQL backend store with --serve-artifacts, on loopback.

train → register → compare → gated promote → load, all over HTTP; two trainings logging at once lose
nothing. Where PostgreSQL (or its driver) is not installed or cannot start, the tests say so and skip.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from routerzoo.cli import main
from routerzoo.routers.kinds.baselines import BestSingleConfig
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.training.train import TrackingConfig, train_router
from routerzoo.zoo import processes

PROMPTS = ["Compute the integral of 3x^2 from 0 to 2.", "Which treaty ended the war that began in 1618?",
           "Factor the polynomial x^2 + 5x + 6.", "Why did the dynasty founded in 220 BC collapse?"]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL + `mlflow server --serve-artifacts` on free loopback ports; yields the server's URI."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install routerzoo[team]")
    from routerzoo.errors import UserError
    from routerzoo.zoo.team_server import PostgresServer, postgres_bindir, start_mlflow_server

    if postgres_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed here; CI installs them")
    root = tmp_path_factory.mktemp("team")
    # as root, PostgreSQL runs as `nobody`, which cannot enter pytest's private temp folders
    pg_dir = Path(tempfile.mkdtemp(prefix="routerzoo-pg-"))
    pg = PostgresServer(pg_dir, processes.free_port(), fast=True)
    try:
        pg_s = pg.start()
        backend = pg.create_database("mlflow")
    except UserError as exc:
        pg.stop()
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    port = processes.free_port()
    log = root / "mlflow-server.log"
    t0 = time.monotonic()
    server = start_mlflow_server(backend, root / "artifacts", port, log=log)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/health", server, timeout=240, log=log)
        print(f"\nPostgreSQL up in {pg_s:.1f} s, mlflow server in {time.monotonic() - t0:.1f} s")
        yield {"uri": f"http://127.0.0.1:{port}", "root": root, "artifacts": root / "artifacts"}
    finally:
        processes.stop(server, timeout=3)  # graceful enough: every request has been answered
        pg.stop()
        import shutil

        shutil.rmtree(pg_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("team-data")
    return save_dataset(make_dataset(topic_outcomes(40), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True)),
                        root / "topics")


def test_train_register_compare_promote_load_over_http(team, data, tmp_path, capsys):
    uri = team["uri"]
    tracking = TrackingConfig(tracking_uri=uri, register="team-router")
    weak = train_router("best-single", BestSingleConfig(), data, tmp_path / "v1", eval_data=data, tracking=tracking, progress=False)
    strong = train_router("knn", KNNConfig(k=7), data, tmp_path / "v2", eval_data=data, tracking=tracking, progress=False)
    assert (weak.registered_version, strong.registered_version) == (1, 2)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    # artifacts went through the server into its artifact folder, not to this client's disk
    assert client.get_run(strong.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(team["artifacts"].rglob("weights.safetensors"))
    assert len(client.get_model_version("team-router", "2").tags["routerzoo.lineage.encoder_sha256"]) == 64

    def zoo(*args):
        code = main(["zoo", *args, "--tracking-uri", uri])
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = zoo("compare", "team-router/1", "team-router/2", "--data", str(data))
    assert code == 0 and "team-router/2" in out and "comparison run:" in out, out
    gate = ("--alias", "champion", "--if-better-than", "champion", "--data", str(data))
    assert zoo("promote", "team-router/1", *gate)[0] == 0  # no champion yet
    code, out = zoo("promote", "team-router/2", *gate, "--split", "all")  # 24 test prompts are within the paired gate's noise
    assert code == 0 and "(delta +" in out, out
    code, out = zoo("promote", "team-router/1", *gate)
    assert code == 1 and "worse by" in out, out
    assert str(client.get_model_version_by_alias("team-router", "champion").version) == "2"

    from routerzoo.routers import load_router

    router = load_router("models:/team-router@champion", tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/team-router@champion")
    assert router.kind == "knn"
    assert model.predict(pd.DataFrame({"prompt": PROMPTS}))["model"].tolist() == router.route(PROMPTS)
    assert "team-router" in zoo("list")[1]


def test_two_trainings_logging_at_once_lose_nothing(team, data, tmp_path):
    uri = team["uri"]
    results, errors = {}, []

    def train(i: int) -> None:
        try:
            tracking = TrackingConfig(tracking_uri=uri, register="concurrent", run_name=f"run-{i}")
            results[i] = train_router("best-single", BestSingleConfig(), data, tmp_path / f"r{i}", eval_data=data,
                                      tracking=tracking, progress=False)
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(repr(exc))

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    assert sorted(r.registered_version for r in results.values()) == [1, 2]
    for r in results.values():
        run = client.get_run(r.run_id)
        assert run.info.status == "FINISHED"
        assert {"eval_aiq", "eval_gap_closed", "fit_s"} <= set(run.data.metrics)
        files = {a.path for a in client.list_artifacts(r.run_id)}
        assert {"router", "lineage.json", "config.json", "reports"} <= files, files
        mv = client.get_model_version("concurrent", str(r.registered_version))
        assert mv.run_id == r.run_id and mv.tags["routerzoo.lineage.dataset"] == "topics"
        lineage = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=r.run_id, artifact_path="lineage.json",
                                                                      dst_path=str(tmp_path / r.run_id))).read_text())
        assert lineage["dataset"] == "topics"


def test_server_hot_reload_follows_the_alias_on_the_tracking_server(team, data, tmp_path):
    """`routerzoo serve models:/NAME@champion` against the team server swaps to the version the alias moves to."""
    import httpx

    from routerzoo.serving.app import create_app
    from routerzoo.serving.config import load_config
    from routerzoo.serving.testing import FakeBackend, ServerThread

    uri = team["uri"]
    tracking = TrackingConfig(tracking_uri=uri, register="reloaded")
    for i in (1, 2):
        train_router("best-single", BestSingleConfig(), data, tmp_path / f"r{i}", tracking=tracking, progress=False)
    assert main(["zoo", "promote", "reloaded/1", "--alias", "champion", "--tracking-uri", uri]) == 0
    with ServerThread(FakeBackend("A")) as fake:
        backends = {m: {"base_url": fake.url + "/v1", "model": f"fake/{m}"} for m in ("math-small", "history-small", "big")}
        cfg = load_config(None, {"router": "models:/reloaded@champion", "tracking_uri": uri, "backends": backends,
                                 "reload": {"poll_interval_s": 0.2}})
        with ServerThread(create_app(cfg)) as server:

            def served_version(want: str, timeout: float = 60.0) -> str:
                deadline, seen = time.monotonic() + timeout, None
                while time.monotonic() < deadline:
                    try:
                        answer = httpx.get(server.url + "/ready", timeout=5)
                        seen = answer.json()["router"]["version"] if answer.status_code == 200 else seen
                    except httpx.HTTPError:
                        pass
                    if seen == want:
                        break
                    time.sleep(0.1)
                return seen

            assert served_version("1") == "1"
            assert main(["zoo", "promote", "reloaded/2", "--alias", "champion", "--tracking-uri", uri]) == 0
            assert served_version("2") == "2"
            reply = httpx.post(server.url + "/v1/chat/completions", timeout=30, json={
                "model": "routerzoo", "messages": [{"role": "user", "content": PROMPTS[0]}]})
            assert reply.status_code == 200


@pytest.mark.slow
def test_mlflow_models_serve_from_the_tracking_server(team, data, tmp_path):
    """`mlflow models serve -m models:/NAME@champion` with the model fetched over HTTP answers like load_router.

    Slow (a third process importing MLflow, about 20 s here): the same check runs by default against
    SQLite in test_zoo_registry.py."""
    from routerzoo.routers import load_router

    uri = team["uri"]
    train_router("knn", KNNConfig(k=5), data, tmp_path / "knn", progress=False,
                 tracking=TrackingConfig(tracking_uri=uri, register="served-team", alias="champion"))
    router = load_router("models:/served-team@champion", tracking_uri=uri)
    proc, url, _ = processes.mlflow_models_serve("models:/served-team@champion", uri, tmp_path / "serve.log")
    try:
        for params in (None, {"cost_weight": 1e9}):
            assert processes.invoke_prompts(url, PROMPTS, params) == router.route(PROMPTS, **(params or {}))
    finally:
        processes.stop(proc)
