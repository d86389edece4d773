"""Scalarised reward regression: one trained network serves every cost weight."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import topic_outcomes

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.kinds.scalarised import ScalarisedConfig
from routerzoo.training.train import TrackingConfig, train_router

MATH = ["Solve for x: 3x + 4 = 19.", "What is the derivative of x^5 + 2x?", "Factor the polynomial x^2 + 7x + 12."]
HISTORY = ["Describe the causes of the war that began in 1914.", "Who signed the treaty concluded in the year 1648?",
           "What were the consequences of the revolution of 1789?"]


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("scalarised")
    ds = save_dataset(make_dataset(topic_outcomes(60), name="topics", split=SplitSpec(val=0.2, test=0.1)), root / "d")
    cfg = ScalarisedConfig(hidden=[64], max_epochs=40, patience=40, batch_size=64)
    return train_router("scalarised", cfg, ds, root / "r", tracking=TrackingConfig(enabled=False), progress=False).router


def test_one_model_answers_every_cost_weight(router):
    big, ms, hs = (router.models.index(m) for m in ("big", "math-small", "history-small"))
    prompts = MATH + HISTORY
    # λ = 0: quality decides; the topic expert or big (both ~0.9), never the wrong expert
    r0 = router.rewards(prompts, 0.0)
    assert (r0[:3].argmax(axis=1) != hs).all() and (r0[3:].argmax(axis=1) != ms).all()
    # λ where big's extra ~$1e-3 outweighs any quality gain: the topic expert, by the network's own reward
    r_hi = router.rewards(prompts, 1000.0)
    assert (r_hi[:3].argmax(axis=1) == ms).all() and (r_hi[3:].argmax(axis=1) == hs).all()
    # the λ input changes the prediction: the network is not a fixed quality model
    assert (r0[:, big] - r_hi[:, big]).min() > 0.5


def test_linearised_prediction_matches_the_network(router):
    """The contract's (q̂, ĉ) is r̂(x, 0) and the λ-slope: q̂ − λ·ĉ tracks r̂(x, λ) inside the training range."""
    prompts = MATH + HISTORY
    pred = router.predict(prompts)
    np.testing.assert_allclose(pred.quality, np.clip(router.rewards(prompts, 0.0), 0, 1))
    big = router.models.index("big")
    assert (pred.cost[:, big] > 20 * pred.cost[:, router.models.index("math-small")]).all()  # ~100× in the data
    lam = 0.5 / router.cost_scale_  # inside lambda_range
    approx = router.rewards(prompts, 0.0) - lam * pred.cost
    assert np.abs(approx - router.rewards(prompts, lam)).max() < 0.2
    assert router.route(prompts, cost_weight=1e5)[:3] == ["math-small"] * 3


def test_config_and_input_errors(router):
    with pytest.raises(ConfigError, match="lambda_range"):
        ScalarisedConfig(lambda_range=[1.0, 0.5])
    with pytest.raises(ConfigError, match="slope_grid"):
        ScalarisedConfig(slope_grid=[0.0])
    with pytest.raises(UserError, match="cost_weight"):
        router.rewards(MATH, -1.0)
