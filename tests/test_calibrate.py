"""`routerzoo calibrate`: λ from a cost, share or quality target, stored as the default policy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routerzoo.cli import main
from routerzoo.errors import UserError
from routerzoo.routers import load_router
from routerzoo.training.calibrate import Target, choose_cost_weight
from routerzoo.training.train import TrackingConfig, train_router


def _synthetic(n: int = 2000, seed: int = 0):
    """Three models of rising cost; the router's predicted quality is informative but noisy."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    tq = (rng.random((n, 3)) < np.clip(np.array([0.3, 0.6, 0.9])[None, :] + 0.3 * (0.5 - difficulty[:, None]), 0, 1)).astype(float)
    tc = np.array([1e-5, 1e-4, 1e-3])[None, :] * (1 + 0.2 * rng.random((n, 3)))
    pq = np.clip(0.7 * tq + 0.3 * rng.random((n, 3)), 0, 1)
    return pq, tc * 1.05, tq, tc


@pytest.mark.parametrize("target", [Target("cost", 3e-4), Target("share", 0.25, "c"), Target("quality", 0.8)])
def test_choose_cost_weight_meets_each_kind_of_target(target):
    pq, pc, tq, tc = _synthetic()
    lam, d = choose_cost_weight(pq, pc, tq, tc, ["a", "b", "c"], target)
    rows = np.arange(len(d))
    if target.metric == "cost":
        assert abs(tc[rows, d].mean() - 3e-4) / 3e-4 < 0.02
    elif target.metric == "share":
        assert abs(np.mean(d == 2) - 0.25) < 0.01
    else:
        assert tq[rows, d].mean() >= 0.8
        # and it is the cheapest way there: a slightly larger λ falls short or costs as much
        from routerzoo.routers.policies.argmax import decide

        d2 = decide(pq, pc, lam * 1.05)
        assert tq[rows, d2].mean() < 0.8 or tc[rows, d2].mean() >= tc[rows, d].mean() - 1e-12
    with pytest.raises(UserError, match="reaches at most"):
        choose_cost_weight(pq, pc, tq, tc, ["a", "b", "c"], Target("quality", 0.999))


def test_calibrate_cli_writes_default_policy(topic_dataset, tmp_path, capsys):
    train_router("knn", None, topic_dataset, tmp_path / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    out = tmp_path / "knn-cal"
    assert main(["calibrate", str(tmp_path / "knn"), "--data", str(topic_dataset), "--target-cost", "0.0003",
                 "--out", str(out), "--json", str(tmp_path / "cal.json")]) == 0
    text = capsys.readouterr().out
    assert "calibrated cost_weight" in text and "vs target" in text and f"wrote {out}" in text
    result = json.loads((tmp_path / "cal.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["policy"] == {"kind": "argmax", "config": {"cost_weight": result["cost_weight"]}}
    assert config["lineage"]["calibration"]["target"] == {"kind": "cost", "value": 0.0003, "model": None}
    assert result["test"]["n_prompts"] > 0 and result["test_figure"] == result["test"]["cost"]
    router = load_router(out)
    prompts = ["Solve for x: 3x + 2 = 11.", "Who signed the treaty concluded in the year 1648?"]
    assert router.route(prompts) == router.route(prompts, cost_weight=result["cost_weight"])
    # the source artifact is untouched; an existing --out is refused without --overwrite
    assert json.loads((tmp_path / "knn" / "config.json").read_text())["policy"]["config"]["cost_weight"] == 0.0
    assert main(["calibrate", str(tmp_path / "knn"), "--data", str(topic_dataset), "--target-cost", "0.0003", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    # in place
    assert main(["calibrate", str(tmp_path / "knn"), "--data", str(topic_dataset), "--target-share", "big=0.2", "--overwrite"]) == 0
    assert json.loads((tmp_path / "knn" / "config.json").read_text())["lineage"]["calibration"]["target"]["model"] == "big"
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "knn"), "--data", str(topic_dataset), "--target-share", "gpt-9=0.5", "--dry-run"]) == 2
    assert "not a candidate" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "knn"), "--data", str(topic_dataset), "--target-share", "big=2", "--dry-run"]) == 2
    assert "MODEL=P" in capsys.readouterr().err
