"""The zoo for roles other than routers: a deferral scorer trained with tracking on is a registered
version with lineage and its AUROC; cascades are registered from their artifact folders, shown,
compared on cascade AUC / AIQ, and a worse one is refused by the gated promotion with exit status 1;
versions of different roles or candidate sets never share a comparison."""

from __future__ import annotations

import pytest
from cascade_data import cascade_table

from routerzoo.cli import main
from routerzoo.data.dataset import make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import UserError
from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence
from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy
from routerzoo.zoo.registry_ops import ModelRef, compare, promote, register, show


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-roles")
    data = save_dataset(make_dataset(cascade_table(90), name="cascade", split=SplitSpec(val=0.3, test=0.3)), root / "ds")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cascades = {}
    for name, chain in (("good", ["small", "mid", "large"]), ("bad", ["mid", "small", "large"])):
        # cheapest first escalates only unsure answers; mid first pays for the mid model every time
        policy = CascadePolicy(CascadeConfig(chain=chain, thresholds=0.5), LogprobConfidence())
        cascades[name] = policy.save(root / name)
    from routerzoo.routers.deferral.artifact import save_deferral

    # a scorer artifact of its own: no test may depend on another having trained one first
    scorer = save_deferral(LogprobConfidence(), root / "plain-scorer", lineage={"dataset": "cascade"})
    return {"root": root, "data": data, "uri": uri, "cascades": cascades, "scorer": scorer}


def _cli(zoo, capsys, *args):
    code = main(["zoo", *args, "--tracking-uri", zoo["uri"]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tracked_deferral_training_is_a_registered_version(zoo, capsys):
    from routerzoo.training.train import TrackingConfig
    from routerzoo.training.train_deferral import train_deferral

    tracking = TrackingConfig(tracking_uri=zoo["uri"], register="scorer", alias="challenger")
    _, path, metrics = train_deferral("logprob-confidence", None, zoo["data"], zoo["root"] / "scorer", tracking=tracking)
    info = show(ModelRef("scorer", alias="challenger"), zoo["uri"])
    assert info["role"] == "deferral" and info["kind"] == "logprob-confidence" and info["version"] == "1"
    assert float(info["tags"]["routerzoo.metric.test_auroc"]) == pytest.approx(metrics["test"]["auroc"], rel=1e-5)
    assert info["tags"]["routerzoo.lineage.dataset"] == "cascade"
    # the run's artifact registers again by run id (the scorer/ folder), as a router's run does
    code, out, _ = _cli(zoo, capsys, "register", info["run_id"], "--name", "scorer")
    assert code == 0 and "registered scorer/2" in out
    code, out, _ = _cli(zoo, capsys, "show", "scorer")
    assert code == 0 and "AUROC" in out


def test_cascades_registered_compared_and_gated(zoo, capsys):
    good = register(str(zoo["cascades"]["good"]), "calibrated", alias="champion", tracking_uri=zoo["uri"])
    bad = register(str(zoo["cascades"]["bad"]), "calibrated", tracking_uri=zoo["uri"])
    code, out, _ = _cli(zoo, capsys, "show", f"calibrated/{bad}")
    assert code == 0 and "policy kind cascade" in out and "scorer logprob-confidence" in out
    result = compare([f"calibrated/{good}", f"calibrated/{bad}"], zoo["data"], "test", tracking_uri=zoo["uri"])
    good_r, bad_r = (result.reports[f"calibrated/{v}"] for v in (good, bad))
    assert good_r["cascade_auc"] > bad_r["cascade_auc"] and good_r["aiq"]["router"] > bad_r["aiq"]["router"]
    assert "cascade_auc" in result.table
    # the worse cascade is refused by the gate (its role's metric: cascade AUC), exit status 1, one line
    code, _, err = _cli(zoo, capsys, "promote", f"calibrated/{bad}", "--alias", "champion",
                        "--if-better-than", "champion", "--data", str(zoo["data"]))
    assert code == 1 and err.startswith("routerzoo: refusing to promote") and "cascade_auc" in err and err.count("\n") == 1
    record = promote(f"calibrated/{good}", "champion", if_better_than="champion", data=zoo["data"],
                     tracking_uri=zoo["uri"])
    assert record["note"] == "already @champion"


def test_comparisons_across_roles_or_candidates_are_refused(zoo):
    register(str(zoo["cascades"]["good"]), "mixed", tracking_uri=zoo["uri"])
    register(str(zoo["scorer"]), "mixed", tracking_uri=zoo["uri"])
    with pytest.raises(UserError, match="different roles cannot be compared"):
        compare(["mixed/1", "mixed/2"], zoo["data"], "test", tracking_uri=zoo["uri"])
    three = CascadePolicy(CascadeConfig(chain=["small", "large"], thresholds=0.5), LogprobConfidence())
    register(str(three.save(zoo["root"] / "three")), "calibrated-3", tracking_uri=zoo["uri"])
    register(str(zoo["cascades"]["good"]), "calibrated-3", tracking_uri=zoo["uri"])
    with pytest.raises(UserError, match="different candidate models"):
        compare(["calibrated-3/1", "calibrated-3/2"], zoo["data"], "test", tracking_uri=zoo["uri"])


@pytest.mark.slow  # fits a Q-network with Lightning and embeds every prompt: ~30 s on a busy 2-core machine
def test_tracked_mdp_training_is_a_registered_version_served_by_pyfunc(zoo):
    import mlflow

    from routerzoo.routers.policies.mdp import MDPConfig
    from routerzoo.training.mdp import train_mdp
    from routerzoo.training.train import TrackingConfig

    config = MDPConfig(scorer="logprob-confidence", epochs=2, iterations=2, hidden=8, pca_dims=3)
    tracking = TrackingConfig(tracking_uri=zoo["uri"], register="mdp", alias="champion")
    policy, _, metrics = train_mdp(config, zoo["data"], zoo["root"] / "mdp", tracking=tracking)
    info = show(ModelRef("mdp", alias="champion"), zoo["uri"])
    assert info["role"] == "policy" and info["kind"] == "mdp" and info["scorer"] == "logprob-confidence"
    assert float(info["tags"]["routerzoo.metric.test_quality"]) == pytest.approx(metrics["test"]["quality"], rel=1e-5)
    assert "routerzoo.metric.test_aiq" in info["tags"] and info["tags"]["routerzoo.lineage.encoder_sha256"]
    # mlflow.pyfunc.load_model of the registered policy replays it on given answers
    mlflow.set_tracking_uri(zoo["uri"])
    model = mlflow.pyfunc.load_model("models:/mdp@champion")
    frame = {"prompt": ["Question 1 about history: level 0.100?"]}
    for m in policy.models:
        frame |= {m: ["The answer is (B)"], f"{m}:token_logprobs": [[-0.01, -0.02]], f"{m}:cost": [0.001]}
    import pandas as pd

    got = model.predict(pd.DataFrame(frame))
    assert got["model"][0] in policy.models and got["cost"][0] >= 0.001
