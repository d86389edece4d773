"""The preference-trained router proves the contract end to end: imported pairs → `routerzoo train
--router elo` → `routerzoo eval` on held-out pairs (pairwise accuracy, log-loss) and, on a dataset
with outcomes, on the cost-quality curve."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

from routerzoo.cli import main
from routerzoo.routers import load_router
from routerzoo.routers.kinds.elo import fit_ratings


def test_ratings_recover_known_strengths():
    """Pairs simulated from known Bradley-Terry strengths: the fit recovers their order and gaps."""
    rng = np.random.default_rng(0)
    true = np.array([1.5, 0.5, 0.0, -2.0])
    a, b = rng.integers(0, 4, 20_000), rng.integers(0, 4, 20_000)
    keep = a != b
    a, b = a[keep], b[keep]
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    outcome = (rng.random(len(a)) < p).astype(float)
    r = fit_ratings(a, b, outcome, np.ones(len(a)), 4, l2=1e-6)
    np.testing.assert_allclose(r - r.mean(), true - true.mean(), atol=0.08)


def _pairs_csv(path, n: int = 300, seed: int = 0):
    """Model strengths strong > mid > weak; ties now and then."""
    rng = np.random.default_rng(seed)
    strength = {"strong": 1.2, "mid": 0.3, "weak": -1.0}
    names = list(strength)
    rows = []
    for i in range(n):
        a, b = rng.choice(names, 2, replace=False)
        p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
        u = rng.random()
        winner = "tie" if abs(u - p) < 0.03 else ("a" if u < p else "b")
        rows.append({"prompt": f"Question {i}: explain topic {i % 17} in detail.", "model_a": a, "model_b": b, "winner": winner})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_train_and_eval_from_preference_pairs_through_the_cli(tmp_path, capsys):
    src = _pairs_csv(tmp_path / "pairs.csv")
    assert main(["data", "import", str(src), "--format", "pairwise", "--out", str(tmp_path / "d")]) == 0
    assert main(["train", "--router", "elo", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "elo"),
                 "--tracking.tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "elo"), "--data", str(tmp_path / "d"), "--split", "test",
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "pair acc" in out and "a coin's log-loss" in out
    report = json.loads((tmp_path / "r.json").read_text())
    pairs = report["pairs"]
    assert pairs["n_pairs"] > 30
    assert pairs["accuracy"] > 0.6 and pairs["log_loss"] < pairs["coin_log_loss"] - 0.02
    router = load_router(tmp_path / "elo")
    elo = router.elo()
    assert elo["strong"] > elo["mid"] > elo["weak"]
    assert router.route(["anything"]) == ["strong"]  # no cost information: the best-rated model
    assert not router.cost_model.known


def test_elo_from_outcomes_gets_a_cost_quality_curve(topic_dataset, tmp_path, capsys):
    """A dataset with outcomes only: pairs are derived from them and the curve is evaluated."""
    assert main(["train", "--router", "elo", "--data", str(topic_dataset), "--out", str(tmp_path / "elo"),
                 "--tracking.enabled", "false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "elo"), "--data", str(topic_dataset), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["aiq"]["router"] == pytest.approx(report["aiq"]["zero_router"], abs=0.05)  # a global ranking
    assert "pairs" not in report


def test_elo_on_real_alpaca_eval(tmp_path, capsys):
    """AlpacaEval annotations (GPT-4-turbo judge) of six models against gpt4_1106_preview."""
    root = shared_data() / "alpaca-eval" / "results"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    files = sorted(str(p) for p in root.glob("*/weighted_alpaca_eval_gpt4_turbo/annotations.json"))
    assert main(["data", "import", *files, "--format", "alpaca-eval", "--out", str(tmp_path / "d")]) == 0
    assert main(["train", "--router", "elo", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "elo"),
                 "--tracking.enabled", "false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "elo"), "--data", str(tmp_path / "d"), "--json", str(tmp_path / "r.json")]) == 0
    pairs = json.loads((tmp_path / "r.json").read_text())["pairs"]
    print(pairs)
    # every pair involves the reference model, which wins most: the ratings must beat a coin clearly
    assert pairs["accuracy"] > 0.65 and pairs["log_loss"] < pairs["coin_log_loss"]
