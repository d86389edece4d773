"""Reward distillation (Zooter): targets, tag enhancement, and a trained router that reads the topic."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import topic_outcomes

from routerzoo.errors import ConfigError
from routerzoo.routers.kinds.zooter import ZooterConfig, reward_targets
from routerzoo.training.train import TrackingConfig, train_router


def test_targets_are_softmax_of_observed_rewards():
    q = np.array([[1.0, 0.0, np.nan], [0.5, 0.5, 0.5], [np.nan, np.nan, np.nan]])
    p = reward_targets(q, temperature=0.5)
    np.testing.assert_allclose(p[0], [np.exp(2) / (np.exp(2) + 1), 1 / (np.exp(2) + 1), 0.0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    assert (p[2] == 0).all()
    # sharper with a lower temperature
    assert reward_targets(q, 0.05)[0, 0] > p[0, 0]


def test_tag_enhancement_mixes_the_category_mean():
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    plain = reward_targets(q, 0.1)
    mixed = reward_targets(q, 0.1, categories=["a", "a", "a", None], tag_weight=0.5)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed[3], plain[3])  # untagged: its own target
    # the odd one out in tag "a" is pulled towards the tag's majority
    assert mixed[2, 0] > plain[2, 0] + 0.2 and mixed[0, 0] < plain[0, 0]


def test_config_checks():
    with pytest.raises(ConfigError, match="temperature"):
        ZooterConfig(temperature=0)
    with pytest.raises(ConfigError, match="tag_weight"):
        ZooterConfig(tag_weight=1.5)


@pytest.mark.parametrize("tags", [False, True])
def test_trained_router_prefers_the_topic_expert(tmp_path, tags):
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    ds = save_dataset(make_dataset(topic_outcomes(40), name="topics", split=SplitSpec(val=0.2, test=0.1)), tmp_path / "d")
    cfg = ZooterConfig(hidden=[64], max_epochs=30, patience=30, batch_size=32, tag_enhancement=tags)
    result = train_router("zooter", cfg, ds, tmp_path / "r", tracking=TrackingConfig(enabled=False), progress=False)
    router = result.router
    math_p = ["Solve for x: 3x + 4 = 19.", "Factor the polynomial x^2 + 7x + 12."]
    hist_p = ["Describe the causes of the war that began in 1914.", "Who signed the treaty concluded in the year 1648?"]
    dist = router.distribution_embeddings(router.embed(math_p + hist_p))
    ms, hs = router.models.index("math-small"), router.models.index("history-small")
    assert (dist[:2, ms] > dist[:2, hs]).all() and (dist[2:, hs] > dist[2:, ms]).all()
    # on the quality scale: a cost weight that makes big not worth it picks each topic's expert
    assert router.route(math_p + hist_p, cost_weight=500.0) == ["math-small"] * 2 + ["history-small"] * 2
    q = router.predict(math_p).quality
    # ~0.9 vs ~0.15 in the data; T·log p̂ compresses gaps learnt from noisy single outcomes, but not away
    assert (q[:, ms] - q[:, hs]).min() > 0.1 and ((q >= 0) & (q <= 1)).all()


def test_quality_scale_is_least_squares():
    from routerzoo.routers.kinds.zooter import fit_quality_scale

    centred = np.array([[1.0, -1.0], [2.0, -2.0]])
    q = np.array([[0.6, 0.4], [0.7, 0.3]])
    # exact: y = (0.1, -0.1, 0.2, -0.2), x = (1, -1, 2, -2): s = 1.0 / 10 = 0.1
    assert fit_quality_scale(centred, q, 9.0) == pytest.approx(0.1)
    assert fit_quality_scale(centred, np.full((2, 2), np.nan), 9.0) == 9.0
    assert fit_quality_scale(-centred, q, 9.0) == 0.0  # never a negative scale (it would invert the ranking)
