"""`routerzoo zoo`: list, show, register, compare, gated promote and rm against a real SQLite registry;
lineage tags on every version; @champion loads identically through routerzoo and mlflow.pyfunc."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from routerzoo.cli import main
from routerzoo.routers.kinds.baselines import BestSingleConfig
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.training.train import TrackingConfig, train_router

PROMPTS = ["Compute the integral of 3x^2 from 0 to 2.", "Which treaty ended the war that began in 1618?",
           "Factor the polynomial x^2 + 5x + 6.", "Why did the dynasty founded in 220 BC collapse?"]
LINEAGE_KEYS = ("dataset", "dataset_sha256", "dataset_sources", "split", "seed", "candidates", "prices", "prices_as_of",
                "encoder", "encoder_sha256", "routerzoo_version", "git_commit")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A registry with router/1 (best single model: closes no gap) and router/2 (kNN: reads the prompt)."""
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("zoo")
    data = save_dataset(make_dataset(topic_outcomes(40), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True),
                                     sources=[{"path": "topics.csv", "sha256": "ab" * 32}]), root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = TrackingConfig(tracking_uri=uri, register="router")
    runs = [train_router("best-single", BestSingleConfig(), data, root / "v1", eval_data=data, tracking=tracking, progress=False),
            train_router("knn", KNNConfig(k=7), data, root / "v2", eval_data=data, tracking=tracking, progress=False)]
    assert [r.registered_version for r in runs] == [1, 2]
    return {"root": root, "data": data, "uri": uri, "runs": runs}


def zoo_cli(zoo, capsys, *args) -> tuple[int, str, str]:
    code = main(["zoo", *args, "--tracking-uri", zoo["uri"]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_version_carries_lineage_metrics_and_plot(zoo, capsys):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=zoo["uri"])
    mv = client.get_model_version("router", "2")
    for key in LINEAGE_KEYS:
        assert f"routerzoo.lineage.{key}" in mv.tags, key
    assert json.loads(mv.tags["routerzoo.lineage.candidates"]) == ["math-small", "history-small", "big"]
    assert mv.tags["routerzoo.lineage.dataset_sources"] == '["topics.csv"]'
    assert len(mv.tags["routerzoo.lineage.encoder_sha256"]) == 64 and mv.tags["routerzoo.lineage.seed"] == "0"
    assert float(mv.tags["routerzoo.metric.eval_gap_closed"]) > 0.3
    # best-single reads no prompt: no encoder in its lineage
    assert "routerzoo.lineage.encoder_sha256" not in client.get_model_version("router", "1").tags
    run_files = {a.path for a in client.list_artifacts(mv.run_id)} | {a.path for a in client.list_artifacts(mv.run_id, "reports")}
    assert {"lineage.json", "reports/cost_quality.png"} <= run_files
    # the artifact itself carries the same record wherever it is copied
    lineage = json.loads((zoo["runs"][1].router_dir / "config.json").read_text())["lineage"]
    assert lineage["encoder_sha256"] == mv.tags["routerzoo.lineage.encoder_sha256"]

    code, out, _ = zoo_cli(zoo, capsys, "show", "router/2")
    assert code == 0
    assert "router/2" in out and "kind knn" in out and "dataset_sha256" in out and "encoder_sha256" in out
    assert "big:" in out and "eval_gap_closed" in out and "plot: runs:/" in out
    code, out, _ = zoo_cli(zoo, capsys, "list")
    assert code == 0 and "router" in out


def test_compare_gate_promote_refuse_force(zoo, capsys, tmp_path):
    data = str(zoo["data"])
    code, out, _ = zoo_cli(zoo, capsys, "compare", "router/1", "router/2", "--data", data, "--plot", str(tmp_path / "cmp.png"))
    assert code == 0, out
    assert "router/1" in out and "router/2" in out and "comparison run:" in out
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=zoo["uri"])
    run_id = out.split("comparison run: ")[1].split()[0]
    run = client.get_run(run_id)
    assert run.data.tags["routerzoo.comparison"] == "router/1 router/2"
    assert run.data.metrics["router_v2_gap_closed"] > run.data.metrics["router_v1_gap_closed"]
    assert {"comparison.png", "comparison.txt", "reports.json"} <= {a.path for a in client.list_artifacts(run_id)}

    # no champion yet (whichever tests ran before): nothing to beat
    zoo_cli(zoo, capsys, "rm", "router@champion")
    code, out, _ = zoo_cli(zoo, capsys, "promote", "router/1", "--alias", "champion", "--if-better-than", "champion", "--data", data)
    assert code == 0 and "nothing to beat" in out
    # on 24 test prompts the kNN's edge is within the paired bootstrap's noise: refused, with the interval
    code, out, err = zoo_cli(zoo, capsys, "promote", "router/2", "--alias", "champion", "--if-better-than", "champion", "--data", data)
    assert code == 1 and "better by" in err and "paired CI" in err, err
    # on all 80 prompts it beats it by more than the noise
    code, out, _ = zoo_cli(zoo, capsys, "promote", "router/2", "--alias", "champion", "--if-better-than", "champion", "--data", data,
                           "--split", "all")
    assert code == 0 and "gap_closed" in out and "(delta +" in out, out
    assert str(client.get_model_version_by_alias("router", "champion").version) == "2"
    # the worse one is refused, says by how much, and the alias stays
    code, out, err = zoo_cli(zoo, capsys, "promote", "router/1", "--alias", "champion", "--if-better-than", "champion", "--data", data)
    assert code == 1 and "refusing to promote router/1 to @champion" in err and "worse by" in err and "\n" not in err.strip()
    assert str(client.get_model_version_by_alias("router", "champion").version) == "2"
    # --force overrides and says so on the version
    code, out, _ = zoo_cli(zoo, capsys, "promote", "router/1", "--alias", "champion", "--if-better-than", "champion",
                           "--data", data, "--force")
    assert code == 0 and "forced" in out
    assert str(client.get_model_version_by_alias("router", "champion").version) == "1"
    tags = client.get_model_version("router", "1").tags
    assert "worse by" in tags["routerzoo.promotion.forced"]
    assert json.loads(tags["routerzoo.promotion.champion"])["forced"] is True
    # back to the better one
    assert zoo_cli(zoo, capsys, "promote", "router/2", "--alias", "champion")[0] == 0


def test_champion_answers_alike_through_routerzoo_pyfunc_and_mlflow_models_serve(zoo, capsys):
    """`mlflow models serve -m models:/router@champion --env-manager local` on loopback, a real process."""
    from routerzoo.routers import load_router
    from routerzoo.zoo import processes
    from routerzoo.zoo.pyfunc import load_registered
    from routerzoo.zoo.tracking import setup

    zoo_cli(zoo, capsys, "promote", "router/2", "--alias", "champion")
    setup(zoo["uri"])
    router = load_router("models:/router@champion", tracking_uri=zoo["uri"])
    model = load_registered("models:/router@champion")
    assert router.kind == "knn" and router.lineage["dataset"] == "topics"
    assert len(set(router.route(PROMPTS, cost_weight=0.0))) > 1  # decisions that depend on the prompt

    proc, url, started = processes.mlflow_models_serve("models:/router@champion", zoo["uri"], zoo["root"] / "serve.log")
    try:
        with capsys.disabled():
            print(f"\nmlflow models serve answered /ping after {started:.1f} s")
        for params in (None, {"cost_weight": 0.0}, {"cost_weight": 1e9}):
            expected = router.route(PROMPTS, **(params or {}))
            assert model.predict(pd.DataFrame({"prompt": PROMPTS}), params=params)["model"].tolist() == expected
            assert processes.invoke_prompts(url, PROMPTS, params) == expected, params
    finally:
        processes.stop(proc)
    assert proc.returncode is not None


def test_register_directory_and_run(zoo, capsys):
    code, out, _ = zoo_cli(zoo, capsys, "register", str(zoo["runs"][1].router_dir), "--name", "copy", "--alias", "challenger")
    assert code == 0 and "registered copy/1 as @challenger" in out
    code, out, _ = zoo_cli(zoo, capsys, "register", zoo["runs"][0].run_id, "--name", "copy")
    assert code == 0 and "registered copy/2" in out
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=zoo["uri"])
    assert client.get_model_version("copy", "1").tags["routerzoo.lineage.dataset"] == "topics"
    assert "routerzoo.metric.eval_gap_closed" in client.get_model_version("copy", "2").tags
    code, _, err = zoo_cli(zoo, capsys, "register", "no-such-run-or-dir", "--name", "copy")
    assert code == 2 and "neither an artifact directory nor a run" in err


def test_errors_are_one_line_and_rm_guards_aliases(zoo, capsys):
    cases = [
        (("show", "nope"), "no registered model 'nope'; registered:"),
        (("show", "router/99"), "router has no version 99; its versions: 1, 2"),
        (("show", "router@nobody"), "router has no alias @nobody"),
        (("promote", "router/2", "--alias", "champion", "--if-better-than", "champion"), "needs --data"),
        (("promote", "router@champion", "--alias", "x"), "name the candidate as NAME/VERSION"),
        (("compare", "router/1", "router/99", "--data", str(zoo["data"])), "no version 99"),
        (("promote", "router/1", "--alias", "champion", "--if-better-than", "champion", "--data", str(zoo["data"]),
          "--metric", "nonsense"), "--metric 'nonsense': choose one of gap_closed, aiq"),
    ]
    for args, message in cases:
        code, _, err = zoo_cli(zoo, capsys, *args)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    zoo_cli(zoo, capsys, "register", str(zoo["runs"][0].router_dir), "--name", "scratch", "--alias", "champion")
    zoo_cli(zoo, capsys, "register", str(zoo["runs"][0].router_dir), "--name", "scratch")
    code, _, err = zoo_cli(zoo, capsys, "rm", "scratch/1")
    assert code == 2 and "holds alias @champion" in err
    assert zoo_cli(zoo, capsys, "rm", "scratch/2")[1].strip() == "removed scratch/2"
    assert zoo_cli(zoo, capsys, "rm", "scratch@champion")[0] == 0
    assert zoo_cli(zoo, capsys, "rm", "scratch")[1].strip() == "removed scratch (1 version)"
    assert zoo_cli(zoo, capsys, "show", "scratch")[0] == 2
    assert main(["zoo"]) == 2 and "SUBCOMMAND" in capsys.readouterr().err  # no subcommand: help, status 2


def test_different_encoder_behind_the_same_id_is_refused(zoo, tmp_path):
    import shutil

    from routerzoo.errors import UserError
    from routerzoo.routers import load_router

    path = Path(shutil.copytree(zoo["runs"][1].router_dir, tmp_path / "knn"))
    config = json.loads((path / "config.json").read_text())
    config["lineage"]["encoder_sha256"] = "0" * 64  # trained with other weights than the id names here
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="different encoder behind the same id") as info:
        load_router(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
