"""The MDP router: fitted Q-iteration on a synthetic three-model table, run through the same offline
client as cascades, saved as safetensors + JSON, trained by `routerzoo train --router mdp`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cascade_data import cascade_table

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import ConfigError, UserError
from routerzoo.evaluation.sequential import evaluate_sequential, run_offline
from routerzoo.routers.core.artifact import WEIGHTS_FILE, ArtifactError
from routerzoo.routers.policies.mdp import MDPConfig, load_mdp
from routerzoo.training.mdp import train_mdp

FAST = {"epochs": 25, "iterations": 2, "hidden": 32, "pca_dims": 8, "batch_size": 32}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mdp")
    return save_dataset(make_dataset(cascade_table(120), name="c", split=SplitSpec(val=0.2, test=0.3)), root / "ds")


@pytest.fixture(scope="module")
def policies(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mdp-out")
    return {lam: train_mdp(MDPConfig(cost_weight=lam, **FAST), data, root / f"l{lam}") for lam in (0.0, 3000.0)}


def test_cost_weight_trades_quality_for_cost(policies, data):
    test = load_dataset(data).outcome_matrix("test")
    free, dear = policies[0.0][2]["test"], policies[3000.0][2]["test"]
    small_q = float(np.nanmean(test.quality[:, test.models.index("small")]))
    assert dear["calls_per_prompt"] == 1.0 and dear["quality"] == pytest.approx(small_q)  # λ huge: one cheap call
    assert free["quality"] > small_q + 0.15 and free["cost"] > 5 * dear["cost"]
    # the curve through the cascade evaluation: the points are the policy's own runs
    points = []
    for lam, (pol, _, _) in sorted(policies.items()):
        r = run_offline(pol, test)
        k = r["known"]
        points.append({"threshold": lam, "cost": float(r["cost"][k].mean()), "quality": float(r["quality"][k].mean()),
                       "n_unscored": int((~k).sum())})
    report = evaluate_sequential(points, test)
    aiq = report["aiq"]
    assert report["kind"] == "sequential" and len(report["points"]) == 2
    # the policy's AIQ is that of its own two points (not of the single models), below the oracle's
    from routerzoo.evaluation import metrics as M

    expected = M.aiq(np.array([p["cost"] for p in points]), np.array([p["quality"] for p in points]), *report["cost_range"])
    assert aiq["router"] == pytest.approx(expected) and aiq["router"] < aiq["oracle"]
    assert aiq["router"] != pytest.approx(aiq["zero_router"])


def test_artifact_round_trip_and_traces(policies, data, tmp_path):
    pol, path, _ = policies[0.0]
    test = load_dataset(data).outcome_matrix("test")
    loaded = load_mdp(path)
    assert loaded.config.models == pol.config.models == load_dataset(data).models
    assert sorted(loaded.config.models) == ["large", "mid", "small"]
    a, b = run_offline(pol, test), run_offline(loaded, test)
    for key in ("cost", "quality", "n_calls", "model"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["n_calls"].max() <= 2  # max_calls
    (path / WEIGHTS_FILE).write_bytes((path / WEIGHTS_FILE).read_bytes() + b" ")
    with pytest.raises(ArtifactError, match="sha256"):
        load_mdp(path)


def _cli(data, out, *extra):
    return [sys.executable, "-m", "routerzoo", "train", "--router", "mdp", "--data", str(data), "--out", str(out),
            "--tracking.enabled", "false", *extra]


def test_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="max_calls"):
        MDPConfig(max_calls=0)
    with pytest.raises(UserError, match="gpt-9"):
        train_mdp(MDPConfig(models=["small", "gpt-9"], **FAST), data, tmp_path / "bad")
    bad = subprocess.run(_cli(data, tmp_path / "m2", "--router.max_calls", "0"), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "max_calls" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_routerzoo_train_trains_the_mdp_router(data, tmp_path):
    cmd = _cli(data, tmp_path / "m", "--router.cost_weight", "3000", "--router.epochs", "3", "--router.iterations", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["config"]["cost_weight"] == 3000.0
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["test"]["calls_per_prompt"] == 1.0
