"""Dual-contrastive router (RouterDC): contrast sets, the two losses, calibration, learning, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import ConfigError, UserError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers.kinds.routerdc import RouterDCConfig
from routerzoo.training.routerdc import contrast_masks, fit_platt, sample_llm_loss, sample_sample_loss
from routerzoo.training.train import TrackingConfig, train_router

OFF = TrackingConfig(enabled=False)
nan = np.nan


def test_contrast_sets_from_binary_graded_and_missing_outcomes():
    q = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0.9, 0.5, 0.1], [1, nan, 0]])
    pos, neg = contrast_masks(q, top_k=2, last_k=2)
    np.testing.assert_array_equal(pos, [[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(neg, [[0, 0, 1], [0, 1, 1], [0, 0, 0], [0, 0, 1], [0, 0, 1]])
    pos, neg = contrast_masks(q[3:4], top_k=1, last_k=1)
    np.testing.assert_array_equal(pos | neg, [[1, 0, 1]])  # the middle model is neither


def test_losses_reward_the_right_ordering():
    pos = torch.tensor([[True, False, False]])
    neg = torch.tensor([[False, False, True]])
    good, bad = torch.tensor([[3.0, 0.0, -3.0]]), torch.tensor([[-3.0, 0.0, 3.0]])
    assert sample_llm_loss(good, pos, neg) < 0.01 < 5.0 < sample_llm_loss(bad, pos, neg)
    np.testing.assert_allclose(float(sample_llm_loss(torch.zeros(1, 3), pos, neg)), np.log(2), rtol=1e-6)
    cluster = torch.tensor([0, 0, 1, 1])
    together = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1)
    mixed = together[[0, 2, 1, 3]]
    assert sample_sample_loss(together, cluster, 0.2) < sample_sample_loss(mixed, cluster, 0.2)


def test_platt_scaling_calibrates_and_never_flips_a_model():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2000, 2))
    y = np.stack([(rng.random(2000) < 1 / (1 + np.exp(-(2 * s[:, 0] - 1)))), rng.random(2000) < 0.3], axis=1).astype(float)
    y[:, 1][s[:, 1] > 0] = 0.0  # model 1 fails where its score is high: its scores must not be trusted
    platt = fit_platt(s, y)
    assert abs(platt.slope[0] - 2) < 0.3 and abs(platt.intercept[0] + 1) < 0.2
    assert platt.slope[1] == 0.0 and abs(1 / (1 + np.exp(-platt.intercept[1])) - y[:, 1].mean()) < 1e-3


def test_learns_topics(topic_dataset, tmp_path):
    result = train_router("routerdc", None, topic_dataset, tmp_path / "dc", tracking=OFF, progress=False)
    assert result.fit_metrics["contrast_prompts"] > 0 and (result.router.platt_[0] >= 0).all()
    report = evaluate_router(result.router, load_dataset(topic_dataset), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]


def test_all_tied_outcomes_and_bad_config_fail_clearly(tmp_path):
    rows = [{"prompt_id": f"p{i}", "prompt": f"question {i}", "model": m, "quality": 1.0, "cost": 0.01}
            for i in range(20) for m in ("a", "b")]
    data = save_dataset(make_dataset(pd.DataFrame(rows), name="ties", split=SplitSpec(val=0.2, test=0.2)), tmp_path / "ties")
    with pytest.raises(UserError, match="no training prompt has models of different quality"):
        train_router("routerdc", None, data, tmp_path / "r", tracking=OFF, progress=False)
    with pytest.raises(ConfigError, match="router.top_k"):
        RouterDCConfig(top_k=0)
    with pytest.raises(ConfigError, match="router.n_clusters"):
        RouterDCConfig(n_clusters=1)
    with pytest.raises(ConfigError, match="temperature"):
        RouterDCConfig(temperature=0.0)
