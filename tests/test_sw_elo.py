"""Similarity-weighted Elo: per-prompt Bradley-Terry ratings from similarity-weighted comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from routerzoo.data.dataset import load_dataset
from routerzoo.data.matrix import PreferenceMatrix
from routerzoo.errors import ConfigError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers.core.cost import CostModel
from routerzoo.routers.kinds.elo import fit_ratings
from routerzoo.routers.kinds.sw_elo import SWEloConfig, SWEloRouter, win_matrices
from routerzoo.training.train import TrackingConfig, train_router


def _pairs():
    # prompt p0: a beats b twice; prompt p1: b beats a once and ties once
    return PreferenceMatrix(["p0", "p0", "p1", "p1"], ["x", "x", "y", "y"], ["a", "b"], np.array([0, 0, 0, 1]),
                            np.array([1, 1, 1, 0]), np.array([1.0, 1.0, 0.0, 0.5]), np.array([1.0, 1.0, 1.0, 2.0]))


def test_win_matrices_sum_comparisons_per_prompt():
    texts, wins = win_matrices(_pairs())
    assert texts == ["x", "y"]
    np.testing.assert_allclose(wins[0], [[0, 2], [0, 0]])
    np.testing.assert_allclose(wins[1], [[0, 1], [2, 0]])  # b's outright win, and a tie of weight 2: one win each


def test_global_weight_alone_gives_the_global_ratings():
    """With the local part negligible next to the prior, every prompt gets the global Elo ratings."""
    pairs = _pairs()
    _, wins = win_matrices(pairs)
    router = SWEloRouter(SWEloConfig(temperature=0.1, global_weight=1e6, l2=1e-3), models=["a", "b"],
                         cost_model=CostModel.fit(["a", "b"], None), encoder="e")
    router.fit_arrays(np.eye(2, 4, dtype=np.float32), wins)
    r = router.ratings(np.eye(2, 4, dtype=np.float32))
    glob = fit_ratings(pairs.a, pairs.b, pairs.outcome, pairs.weight, 2, 1e-3)
    np.testing.assert_allclose(r - r.mean(axis=1, keepdims=True), np.tile(glob - glob.mean(), (2, 1)), atol=1e-4)
    local = SWEloRouter(SWEloConfig(temperature=0.01, global_weight=0.0), models=["a", "b"],
                        cost_model=CostModel.fit(["a", "b"], None), encoder="e").fit_arrays(np.eye(2, 4, dtype=np.float32), wins)
    r = local.ratings(np.eye(2, 4, dtype=np.float32))
    assert r[0, 0] > r[0, 1] and r[1, 1] > r[1, 0]  # near x, a leads; near y, b leads


def test_learns_topics(topic_dataset, tmp_path):
    result = train_router("sw-elo", None, topic_dataset, tmp_path / "s", tracking=TrackingConfig(enabled=False), progress=False)
    assert result.router.config.temperature == result.fit_metrics["temperature"]
    report = evaluate_router(result.router, load_dataset(topic_dataset), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]


def test_config_errors():
    with pytest.raises(ConfigError, match="router.temperature must be > 0"):
        SWEloConfig(temperature=0.0)
    with pytest.raises(ConfigError, match="router.top_k must be >= 1"):
        SWEloConfig(top_k=0)
    with pytest.raises(ConfigError, match="router.global_weight"):
        SWEloConfig(global_weight=-1.0)
