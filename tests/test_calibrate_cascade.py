"""Cascade thresholds calibrated on the validation split to a target cost or quality, realised on test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from cascade_data import cascade_table

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import UserError
from routerzoo.routers.deferral.logprob_confidence import LogprobConfidence
from routerzoo.training.calibrate import Target
from routerzoo.training.calibrate_cascade import calibrate_cascade, realise

CHAIN = ["small", "mid", "large"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal-cascade")
    return save_dataset(make_dataset(cascade_table(900), name="cascade", split=SplitSpec(val=0.4, test=0.4)), root / "ds")


def test_cost_target_is_met_on_calibration_and_close_on_test(data):
    ds = load_dataset(data)
    val, test = ds.outcome_matrix("val"), ds.outcome_matrix("test")
    scorer = LogprobConfidence()
    cheapest = realise(scorer, CHAIN, [0.0, 0.0], val, "val")  # accept every first answer
    dearest = realise(scorer, CHAIN, [2.0, 2.0], val, "val")  # every model called
    assert dearest.calls_per_prompt == 3 and dearest.cost > sum(val.cost.mean(axis=0)) * 0.99  # every call counted
    budget = cheapest.cost + 0.3 * (dearest.cost - cheapest.cost)
    res = calibrate_cascade(scorer, CHAIN, val, Target("cost", budget), test_matrix=test)
    assert res.calibration.cost <= budget
    assert res.calibration.quality > cheapest.quality + 0.1  # the budget buys quality
    assert abs(res.test.cost - res.calibration.cost) / res.calibration.cost < 0.35  # generalises to held-out prompts
    assert len(res.thresholds) == 2 and res.to_dict()["test_figure"] == res.test.cost
    q = calibrate_cascade(scorer, CHAIN, val, Target("quality", 0.8), test_matrix=test)
    assert q.calibration.quality >= 0.8 and q.calibration.cost < dearest.cost


def test_cli_writes_a_serve_section_and_reports_test(data, tmp_path):
    out, js = tmp_path / "cascade.yaml", tmp_path / "cal.json"
    cmd = [sys.executable, "-m", "routerzoo", "calibrate-cascade", "--data", str(data), "--chain", "small,large",
           "--target-quality", "0.75", "--out", str(out), "--json", str(js)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "realised" in proc.stdout and "vs target" in proc.stdout
    section = yaml.safe_load(out.read_text())
    assert section["mode"] == "cascade" and section["cascade"]["chain"] == ["small", "large"]
    assert len(section["cascade"]["thresholds"]) == 1
    from routerzoo.serving.config import load_config

    cfg = load_config(None, {**section, "backends": {m: {"base_url": "http://127.0.0.1:9/v1"} for m in ("small", "large")}})
    assert cfg.cascade.thresholds == section["cascade"]["thresholds"]
    assert json.loads(js.read_text())["calibration"]["quality"] >= 0.75
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    bad = subprocess.run(cmd[:7] + ["small,gpt-9", "--target-cost", "0.001"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "gpt-9" in bad.stderr and bad.stderr.count("\n") == 1


def test_errors(data):
    val = load_dataset(data).outcome_matrix("val")
    with pytest.raises(UserError, match="at least two"):
        calibrate_cascade(LogprobConfidence(), ["small"], val, Target("cost", 0.01))
    with pytest.raises(UserError, match="cost or a quality"):
        calibrate_cascade(LogprobConfidence(), CHAIN, val, Target("share", 0.5, "small"))
