"""No silent wrong answers (issue 18): a target that can't be met, a router without the costs a
target needs, a scorer without the inputs it reads, and registry misuse each end in exit status 2,
one line on stderr and nothing written; ``--allow-miss`` writes the nearest point with a warning."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from cascade_data import cascade_table
from conftest import cli_refused, topic_outcomes

from routerzoo.cli import main
from routerzoo.data.dataset import make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.routers import load_router
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.training.train import TrackingConfig, train_router


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A topics dataset with a kNN router, a preference-only dataset with an Elo router (no costs),
    and a cascade table without token logprobs."""
    root = tmp_path_factory.mktemp("silent")
    topics = save_dataset(make_dataset(topic_outcomes(60), name="topics", split=SplitSpec(val=0.3, test=0.3)), root / "topics")
    train_router("knn", KNNConfig(k=5), topics, root / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    rng = np.random.default_rng(0)
    names = ["strong", "mid", "weak"]
    pairs = []
    for i in range(120):
        a, b = rng.choice(names, 2, replace=False)
        pairs.append({"prompt_id": f"q{i}", "prompt": f"Question {i} about topic {i % 7}", "model_a": a, "model_b": b,
                      "winner": "a" if names.index(a) < names.index(b) else "b"})
    prefs = save_dataset(make_dataset(preferences=pd.DataFrame(pairs), name="pairs"), root / "pairs")
    train_router("elo", None, prefs, root / "elo", tracking=TrackingConfig(enabled=False), progress=False)
    split = SplitSpec(val=0.3, test=0.3)
    cascade = save_dataset(make_dataset(cascade_table(60), name="c", split=split), root / "cascade")
    no_lp = save_dataset(make_dataset(cascade_table(60).drop(columns=["token_logprobs", "response"]), name="nolp",
                                      split=split), root / "nolp")
    return {"root": root, "topics": topics, "knn": root / "knn", "prefs": prefs, "elo": root / "elo",
            "cascade": cascade, "no_lp": no_lp}


# -- calibrate ----------------------------------------------------------------------------------------
def test_calibrate_unreachable_targets_are_refused(zoo, tmp_path, capsys):
    knn, topics, out, js = zoo["knn"], zoo["topics"], tmp_path / "cal", tmp_path / "cal.json"
    base = ["calibrate", knn, "--data", topics, "--out", out, "--json", js]
    cli_refused(capsys, [*base, "--target-cost", "1e-9"], "--target-cost", "out of reach", "at least $", written=[out, js])
    cli_refused(capsys, [*base, "--target-quality", "0.9999"], "--target-quality", "reaches at most", written=[out, js])
    cli_refused(capsys, [*base, "--target-quality", "1.5"], "--target-quality", "[0, 1]", written=[out, js])
    cli_refused(capsys, [*base, "--target-share", "big=0.99"], "--target-share", "out of reach", written=[out, js])
    # writing nothing is not a success: refused up front unless asked for with --dry-run
    cli_refused(capsys, ["calibrate", knn, "--data", topics, "--target-cost", "5e-4"], "nothing would be written", "--dry-run")
    assert main([str(a) for a in ["calibrate", knn, "--data", topics, "--target-cost", "5e-4", "--dry-run"]]) == 0
    assert "nothing written (--dry-run)" in capsys.readouterr().out
    before = (knn / "config.json").read_text()
    cli_refused(capsys, ["calibrate", knn, "--data", topics, "--target-cost", "5e-4", "--overwrite", "--dry-run"], "--dry-run")
    assert (knn / "config.json").read_text() == before


def test_calibrate_allow_miss_writes_the_nearest_point_with_a_warning(zoo, tmp_path, capsys):
    out, js = tmp_path / "cal", tmp_path / "cal.json"
    capsys.readouterr()
    assert main(["calibrate", str(zoo["knn"]), "--data", str(zoo["topics"]), "--target-cost", "1e-9", "--out", str(out),
                 "--json", str(js), "--allow-miss"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "warning" in captured.err and "out of reach" in captured.err
    result = json.loads(js.read_text())
    assert result["missed"] is True
    # the nearest point of a too-low cost target is the cheapest one the router reaches
    assert result["calibration"]["cost"] == pytest.approx(result["reachable"][0])
    assert json.loads((out / "config.json").read_text())["lineage"]["calibration"]["missed"] is True


def test_calibrate_reports_cross_validated_and_test_figures_with_ci(zoo, tmp_path, capsys):
    js = tmp_path / "cal.json"
    capsys.readouterr()
    assert main(["calibrate", str(zoo["knn"]), "--data", str(zoo["topics"]), "--target-cost", "1.5e-4", "--dry-run",
                 "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "cross-validated (5 folds" in text and "95% CI" in text and "reachable at any λ" in text
    result = json.loads(js.read_text())
    lo, hi = result["cv"]["ci95"]
    assert lo <= result["cv"]["figure"] <= hi and len(result["cv"]["cost_weights"]) == 5
    tlo, thi = result["test_ci95"]
    assert tlo <= result["test_figure"] <= thi
    assert result["reachable"][0] <= 1.5e-4 <= result["reachable"][1] and result["missed"] is False


def test_router_without_costs_cannot_be_calibrated_to_cost_or_used_with_a_budget(zoo, tmp_path, capsys):
    elo, prefs, out = zoo["elo"], zoo["prefs"], tmp_path / "cal"
    assert sorted(load_router(elo).cost_model.unknown_models()) == ["mid", "strong", "weak"]
    cli_refused(capsys, ["calibrate", elo, "--data", prefs, "--target-cost", "1e-3", "--out", out],
            "--target-cost", "predicts no cost", written=[out])
    cli_refused(capsys, ["calibrate", elo, "--data", prefs, "--target-share", "weak=0.5", "--out", out],
            "--target-share", "predicts no cost", written=[out])
    prompts = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["hello", "world"]}).to_csv(prompts, index=False)
    dec = tmp_path / "d.csv"
    cli_refused(capsys, ["assign", elo, "--prompts", prompts, "--budget", "0.01", "--out", dec], "--budget", "predicts no cost",
            written=[dec, dec.with_name("d.csv.summary.json")])


@pytest.mark.slow
def test_calibrate_register_writes_the_version_back_with_its_alias(zoo, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = ["calibrate", zoo["knn"], "--data", zoo["topics"], "--target-cost", "3e-4", "--tracking-uri", uri]
    cli_refused(capsys, [*base, "--register", "cal", "--alias", "latest"], "--alias 'latest'", "reserved")
    cli_refused(capsys, [*base, "--register", "a/b"], "--register 'a/b'")
    cli_refused(capsys, [*base, "--alias", "x"], "--alias needs --register")
    assert not (tmp_path / "mlflow.db").exists()  # refused before the registry was touched
    assert main([str(a) for a in [*base, "--register", "cal", "--alias", "calibrated"]]) == 0
    assert "registered cal/1 as @calibrated" in capsys.readouterr().out
    router = load_router("models:/cal@calibrated", tracking_uri=uri)
    assert router.lineage["calibration"]["target"]["value"] == 3e-4
    assert router.policy.config.cost_weight == pytest.approx(router.lineage["calibration"]["cost_weight"])


# -- cascades and deferral scorers -----------------------------------------------------------------------
def test_calibrate_cascade_refuses_impossible_targets_and_missing_inputs(zoo, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    base = ["calibrate-cascade", "--data", zoo["cascade"], "--chain", "small,large", "--out", out]
    cli_refused(capsys, [*base, "--target-quality", "1.5"], "--target-quality", "[0, 1]", written=[out])
    cli_refused(capsys, [*base, "--target-cost", "1e-9"], "--target-cost", "out of reach", written=[out])
    cli_refused(capsys, ["calibrate-cascade", "--data", zoo["no_lp"], "--chain", "small,large", "--out", out,
                     "--target-quality", "0.7", "--scorer", "logprob-confidence"], "logprob-confidence", "token logprobs",
            written=[out])
    capsys.readouterr()
    assert main([str(a) for a in [*base, "--target-cost", "1e-9", "--allow-miss"]]) == 0
    assert "warning" in capsys.readouterr().err and out.exists()


@pytest.mark.parametrize("kind, reads", [("logprob-confidence", "token logprobs"), ("consistency", "k sampled responses"),
                                         ("token-quantile", "token logprobs"), ("prompt-response", "response texts")])
def test_deferral_training_refuses_a_table_without_what_the_kind_reads(kind, reads, zoo, tmp_path, capsys):
    out = tmp_path / kind
    cli_refused(capsys, ["train", "--router", kind, "--data", zoo["no_lp"], "--out", out], f"the {kind!r} scorer reads",
            reads, written=[out])


# -- the registry boundary ---------------------------------------------------------------------------------
def test_zoo_refuses_bad_names_aliases_and_tracking_uris_in_one_line(zoo, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    knn = zoo["knn"]
    for name in ("a/b", "", "x:y", "n@a", " pad"):
        cli_refused(capsys, ["zoo", "register", knn, "--name", name, "--tracking-uri", uri], "--name")
    for alias in ("", "latest", "V3", "a b", "x/y"):
        cli_refused(capsys, ["zoo", "register", knn, "--name", "ok", "--alias", alias, "--tracking-uri", uri], "--alias")
    cli_refused(capsys, ["zoo", "promote", "ok/1", "--alias", "latest", "--tracking-uri", uri], "--alias 'latest'")
    assert not (tmp_path / "mlflow.db").exists()  # a refused alias left no version behind
    cli_refused(capsys, ["zoo", "list", "--tracking-uri", "bogus://x"], "--tracking-uri bogus://x", "unknown scheme")
    cli_refused(capsys, ["zoo", "list", "--tracking-uri", f"sqlite:///{tmp_path / 'no' / 'such' / 'm.db'}"], "does not exist")
    (tmp_path / "junk.db").write_text("not a database")
    cli_refused(capsys, ["zoo", "list", "--tracking-uri", f"sqlite:///{tmp_path / 'junk.db'}"], "(--tracking-uri) refused",
            "file is not a database")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    cli_refused(capsys, ["zoo", "list", "--tracking-uri", f"http://127.0.0.1:{port}"], "cannot reach the tracking server")
    assert time.perf_counter() - t0 < 10


@pytest.mark.slow
def test_zoo_compare_refuses_versions_with_different_candidates(zoo, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    two = topic_outcomes(20)
    two = save_dataset(make_dataset(two[two["model"] != "big"], name="two"), tmp_path / "two")
    train_router("knn", KNNConfig(k=3), two, tmp_path / "knn2", tracking=TrackingConfig(enabled=False), progress=False)
    for src in (zoo["knn"], tmp_path / "knn2"):
        assert main(["zoo", "register", str(src), "--name", "r", "--tracking-uri", uri]) == 0
    cli_refused(capsys, ["zoo", "compare", "r/1", "r/2", "--data", zoo["topics"], "--tracking-uri", uri],
            "need the same candidate models")
