"""K-fold cross-validation in training, and the default policy chosen on its out-of-fold predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routerzoo.errors import ConfigError
from routerzoo.training.cv import CVConfig, assign_folds


def test_folds_group_equal_texts_and_spread_each_category_evenly():
    prompts = [f"question {i}" for i in range(60)] + ["  Question 3 "]  # a duplicate after normalisation
    cats = ["a"] * 40 + ["b"] * 20 + ["a"]
    fold = assign_folds(prompts, cats, 4, seed=0)
    assert fold[3] == fold[60]
    for cat in ("a", "b"):
        counts = np.bincount(fold[:60][np.array(cats[:60]) == cat], minlength=4)
        assert counts.max() - counts.min() <= 1, counts
    assert np.array_equal(fold, assign_folds(prompts, cats, 4, seed=0))  # deterministic
    assert not np.array_equal(fold, assign_folds(prompts, cats, 4, seed=1))


@pytest.mark.parametrize("folds", [-1, 1, 2])
def test_too_few_folds_is_a_config_error(folds):
    with pytest.raises(ConfigError, match="--cv.folds"):
        CVConfig(folds=folds)


def test_train_reports_cv_and_never_reads_test(topic_dataset, tmp_path, monkeypatch):
    from routerzoo.data.dataset import load_dataset
    from routerzoo.training import cv as cv_mod
    from routerzoo.training.train import TrackingConfig, train_router

    seen = []
    real = cv_mod.Folds.__init__

    def spy(self, ctx, k, seed=0):
        real(self, ctx, k, seed)
        seen.extend(self.data.prompt_ids)

    monkeypatch.setattr(cv_mod.Folds, "__init__", spy)
    result = train_router("knn", None, topic_dataset, tmp_path / "knn", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3, default_policy="none"))
    test_ids = set(load_dataset(topic_dataset).outcome_matrix("test").prompt_ids)
    assert seen and not test_ids & set(seen)
    m = result.fit_metrics
    assert m["cv_folds"] == 3 and 0.0 < m["cv_gap_closed_mean"] <= 1.0 and m["cv_gap_closed_sd"] >= 0
    assert "cv_aiq_mean" in m and "cv_aiq_sd" in m
    lineage = json.loads((tmp_path / "knn" / "config.json").read_text())["lineage"]
    assert len(lineage["cv"]["per_fold"]) == 3 and lineage["cv"]["n_prompts"] == len(seen)
    assert "uncertain by about" in lineage["cv"]["note"]  # under a few hundred prompts the width is stated
    assert any("uncertain by about" in line for line in result.notes)


def test_default_policy_stops_sending_everything_to_the_expensive_model(topic_dataset, tmp_path):
    """Cheap models are as good as ``big`` on their own topic: the served default must use them."""
    from routerzoo.data.dataset import load_dataset
    from routerzoo.routers import load_router
    from routerzoo.training.train import TrackingConfig, train_router

    result = train_router("knn", None, topic_dataset, tmp_path / "knn", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3))
    config = json.loads((tmp_path / "knn" / "config.json").read_text())
    assert config["policy"]["kind"] == "argmax" and config["policy"]["config"]["cost_weight"] > 0
    policy = config["lineage"]["default_policy"]
    lo, hi = policy["useful_cost_weights"]
    assert 0 < lo <= policy["cost_weight"] <= hi or policy["cost_weight"] >= hi
    assert policy["cv_cost"][0] < policy["best_single_cost"]
    assert any(line.startswith("default policy: λ =") for line in result.notes)

    router = load_router(tmp_path / "knn")  # what the server loads and routes with by default
    test = load_dataset(topic_dataset).outcome_matrix("test")
    chosen = router.route(test.prompts)
    assert chosen.count("big") / len(chosen) < 0.2
    rows = np.arange(len(chosen))
    picks = np.array([test.models.index(c) for c in chosen])
    big = test.models.index("big")
    # a cheap model is as good on its topic: the routed quality stays within noise of always-big
    assert test.quality[rows, picks].mean() >= test.quality[:, big].mean() - 0.15


def test_cli_reports_cv_and_refuses_two_folds(topic_dataset, tmp_path, capsys):
    from routerzoo.cli import main

    out = tmp_path / "cli-knn"
    assert main(["train", "--router", "knn", "--data", str(topic_dataset), "--out", str(out), "--router.k", "10",
                 "--cv.folds", "3", "--tracking.enabled", "false"]) == 0
    text = capsys.readouterr().out
    assert "knn: CV gap closed" in text and "(mean ± sd over 3 folds)" in text
    assert "useful λ range" in text
    assert main(["train", "--router", "knn", "--data", str(topic_dataset), "--out", str(tmp_path / "x"),
                 "--cv.folds", "2", "--tracking.enabled", "false"]) != 0
    err = capsys.readouterr().err
    assert "--cv.folds" in err and "Traceback" not in err


def test_cv_metrics_reach_mlflow(topic_dataset, tmp_path):
    import mlflow

    from routerzoo.training.train import TrackingConfig, train_router

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_router("best-single", None, topic_dataset, tmp_path / "bs", progress=False,
                          tracking=TrackingConfig(tracking_uri=uri, log_model=False), cv=CVConfig(folds=3))
    mlflow.set_tracking_uri(uri)
    metrics = mlflow.get_run(result.run_id).data.metrics
    assert {"cv_gap_closed_mean", "cv_gap_closed_sd", "cv_aiq_mean", "cv_aiq_sd"} <= set(metrics)


def test_a_flattering_validation_split_is_called_out():
    from routerzoo.training.cv import CVResult, FoldResult
    from routerzoo.training.train import flattered_by_validation

    folds = [FoldResult(i, 50, g, 0.5, 0.0) for i, g in enumerate([0.05, 0.10, 0.0, 0.08, 0.02])]
    result = CVResult("knn", folds, np.zeros((1, 2)), np.zeros((1, 2)))
    warning = flattered_by_validation({"gap_closed": 0.571, "n_prompts": 32}, result)
    assert "57.1%" in warning and "32-prompt validation split" in warning and "--router auto" in warning
    assert flattered_by_validation({"gap_closed": 0.09, "n_prompts": 32}, result) is None
