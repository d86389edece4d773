"""`routerzoo eval` of deferral scorers, a calibrated cascade and the MDP router, each trained (or
calibrated) through the CLI on a tiny synthetic three-model table; its numbers are checked against
what training / calibration reported on the same split, and tables lacking what a scorer reads are
refused in one line."""

from __future__ import annotations

import json

import pytest
import yaml
from cascade_data import cascade_table

from routerzoo.cli import main
from routerzoo.data.dataset import make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-seq")
    split = SplitSpec(val=0.3, test=0.3)
    ds = save_dataset(make_dataset(cascade_table(90), name="c", split=split), root / "ds")
    no_lp = save_dataset(make_dataset(cascade_table(60).drop(columns=["token_logprobs"]), name="nolp", split=split),
                         root / "nolp")
    return ds, no_lp


def _json_tail(out: str) -> dict:
    return json.loads(out[out.index("{"):])


@pytest.mark.parametrize("kind, fields", [
    ("token-quantile", ["--router.model", "small"]),
    ("logprob-confidence", []),
    ("posthoc-deferral", ["--router.model", "small", "--router.next_model", "mid"]),
    ("prompt-response", ["--router.model", "small"]),
])
def test_eval_deferral_scorer(kind, fields, data, tmp_path, capsys):
    ds, _ = data
    out = tmp_path / kind
    assert main(["train", "--router", kind, "--data", str(ds), "--out", str(out), "--next-model", "mid", *fields]) == 0
    trained = _json_tail(capsys.readouterr().out)["test"]
    model = [] if fields else ["--model", "small"]
    assert main(["eval", str(out), "--data", str(ds), "--next-model", "mid", *model, "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kind"] == "deferral" and report["scorer"] == kind and report["model"] == "small"
    assert f"AUROC (answer right) {report['auroc']:.4f}" in printed and "deferral curve to mid: AUC" in printed
    if fields:  # the scorer's own model: the same answers as training's test evaluation
        assert report["n_answers"] == trained["n_answers"]
        assert report["auroc"] == pytest.approx(trained["auroc"])
        assert report["deferral_auc"] == pytest.approx(trained["deferral_auc"])
    # logprobs separate right from wrong answers in this table: the logprob scorers rank well, and
    # post-hoc deferral (trained for "keep beats the next model", not correctness) defers better than chance
    if kind in ("token-quantile", "logprob-confidence"):
        assert report["auroc"] > 0.8
    if kind != "prompt-response":
        assert report["random_auc"] < report["deferral_auc"] <= report["oracle_auc"] + 1e-12


def test_eval_calibrated_cascade_and_its_policy_form(data, tmp_path, capsys):
    ds, _ = data
    spec, cal = tmp_path / "cascade.yaml", tmp_path / "cal.json"
    assert main(["calibrate-cascade", "--data", str(ds), "--chain", "small,large", "--scorer", "logprob-confidence",
                 "--target-quality", "0.75", "--out", str(spec), "--json", str(cal)]) == 0
    realised = json.loads(cal.read_text())["test"]
    capsys.readouterr()
    assert main(["eval", str(spec), "--data", str(ds), "--json", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "c.png")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    point = report["operating_point"]
    # the calibrated thresholds run on test realise what calibrate-cascade reported for test
    assert point["quality"] == pytest.approx(realised["quality"]) and point["cost"] == pytest.approx(realised["cost"])
    assert point["calls_per_prompt"] == pytest.approx(realised["calls_per_prompt"]) and 1 < point["calls_per_prompt"] < 2
    assert report["models"] == ["small", "large"] and report["cascade_auc"] is not None
    assert report["aiq"]["zero_router"] < report["aiq"]["router"] <= report["aiq"]["oracle"] + 1e-12
    assert f"{point['calls_per_prompt']:.2f} calls/prompt" in printed and "cascade AUC" in printed
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # a bare chain + scorer spec is a cascade too (at threshold 0 it never escalates: the small model)
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"chain": ["small", "large"], "thresholds": 0.0, "scorer": "logprob-confidence"}))
    assert main(["eval", str(bare), "--data", str(ds), "--json", str(tmp_path / "b.json")]) == 0
    small = json.loads((tmp_path / "b.json").read_text())
    assert small["operating_point"]["calls_per_prompt"] == 1.0
    assert small["operating_point"]["quality"] == pytest.approx(small["single_models"][0]["quality"])


def test_eval_mdp_router(data, tmp_path, capsys):
    ds, _ = data
    out = tmp_path / "mdp"
    assert main(["train", "--router", "mdp", "--data", str(ds), "--out", str(out), "--router.epochs", "5",
                 "--router.iterations", "2", "--router.hidden", "16", "--router.pca_dims", "4"]) == 0
    trained = _json_tail(capsys.readouterr().out)["test"]
    assert main(["eval", str(out), "--data", str(ds), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    point = report["operating_point"]
    assert report["policy"] == "mdp" and point["n_scored"] == trained["n_prompts"]
    for key in ("cost", "quality", "calls_per_prompt"):
        assert point[key] == pytest.approx(trained[key])
    assert "mdp policy" in printed and f"mean quality {point['quality']:.4f}" in printed
    # served the same way: a cascade section naming the policy evaluates the same router
    spec = tmp_path / "serve.yaml"
    spec.write_text(yaml.safe_dump({"mode": "cascade", "cascade": {"policy": str(out)}}))
    assert main(["eval", str(spec), "--data", str(ds), "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["operating_point"] == point


def test_eval_errors_are_one_line(data, tmp_path, capsys):
    ds, no_lp = data
    tq, cons = tmp_path / "tq", tmp_path / "cons"
    assert main(["train", "--router", "token-quantile", "--data", str(ds), "--out", str(tq), "--router.model", "small"]) == 0
    # a table holds one response per answer: training consistency on it is refused, so save it as configured
    assert main(["train", "--router", "consistency", "--data", str(ds), "--out", str(cons)]) == 2
    assert "reads k sampled responses" in capsys.readouterr().err and not cons.exists()
    from routerzoo.routers.deferral.artifact import save_deferral
    from routerzoo.routers.deferral.consistency import ConsistencyScorer

    save_deferral(ConsistencyScorer(), cons)
    route = tmp_path / "route.yaml"
    route.write_text(yaml.safe_dump({"mode": "route", "router": "x"}))
    cases = [
        (["eval", str(tq), "--data", str(no_lp)], "needs token logprobs; the table has none for the answers of model 'small'"),
        (["eval", str(cons), "--data", str(ds), "--model", "small"], "needs k sampled responses"),
        (["eval", str(tq), "--data", str(ds), "--next-model", "gpt-9"], "--next-model 'gpt-9' is not in the dataset"),
        (["eval", str(tq), "--data", str(ds), "--strong", "large", "--weak", "small"], "--strong/--weak applies to routers"),
        (["eval", str(tq), "--data", str(ds), "--plot", str(tmp_path / "p.png")], "--plot draws cost-quality curves"),
        (["eval", str(tq), str(cons), "--data", str(ds)], "one at a time"),
        (["eval", str(route), "--data", str(ds)], "mode is 'route'"),
    ]
    capsys.readouterr()
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "p.png").exists()


def test_eval_of_registered_scorer_and_policy_by_role(data, tmp_path, capsys):
    """`routerzoo eval models:/NAME@ALIAS` evaluates a deferral scorer or a policy by its role, as its folder."""
    from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence
    from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
    from routerzoo.zoo.registry_ops import register

    ds, _ = data
    scorer = tmp_path / "scorer"
    assert main(["train", "--router", "logprob-confidence", "--data", str(ds), "--out", str(scorer)]) == 0
    policy = CascadePolicy(CascadeConfig(chain=["small", "large"], thresholds=0.5), LogprobConfidence()).save(tmp_path / "p")
    register(str(scorer), "eval-role-scorer", alias="champion")
    register(str(policy), "eval-role-cascade", alias="champion")
    for folder, uri, extra in ((scorer, "models:/eval-role-scorer@champion", ["--model", "small"]),
                               (policy, "models:/eval-role-cascade/1", [])):
        reports = []
        for source in (str(folder), uri):
            assert main(["eval", source, "--data", str(ds), *extra, "--json", str(tmp_path / "r.json")]) == 0
            reports.append(json.loads((tmp_path / "r.json").read_text()))
        capsys.readouterr()
        assert reports[1].pop("source") == uri and reports[0].pop("source") == str(folder)
        assert reports[1] == reports[0]
    assert reports[0]["policy"] == "cascade"
