"""Matrix factorisation router: learns prompt-dependent quality from outcomes and from pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import ConfigError, UserError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers import load_router
from routerzoo.routers.kinds.mf import MFConfig
from routerzoo.training.train import TrackingConfig, train_router

OFF = TrackingConfig(enabled=False)


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    from conftest import topic_outcomes

    ds = make_dataset(topic_outcomes(), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True))
    return save_dataset(ds, tmp_path_factory.mktemp("mf") / "topics")


@pytest.fixture(scope="module")
def topic_pairs(tmp_path_factory):
    """Pairs only: on math prompts math-small beats history-small, on history prompts the reverse."""
    from conftest import topic_outcomes

    base = topic_outcomes(60).drop_duplicates("prompt_id")
    rows = []
    for _, r in base.iterrows():
        own, other = ("math-small", "history-small") if r["category"] == "math" else ("history-small", "math-small")
        rows += [{"prompt_id": r["prompt_id"], "prompt": r["prompt"], "model_a": own, "model_b": other, "winner": "a"},
                 {"prompt_id": r["prompt_id"], "prompt": r["prompt"], "model_a": "big", "model_b": other, "winner": "a"}]
    ds = make_dataset(preferences=pd.DataFrame(rows), name="pairs", split=SplitSpec(val=0.2, test=0.3))
    return save_dataset(ds, tmp_path_factory.mktemp("mf") / "pairs")


def test_learns_topics_from_outcomes(topics, tmp_path):
    result = train_router("mf", None, topics, tmp_path / "mf", tracking=OFF, progress=False)
    assert result.router.config.source == "outcomes"  # "auto" resolved and stored
    report = evaluate_router(load_router(tmp_path / "mf"), load_dataset(topics), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]


def test_learns_prompt_dependent_preferences_from_pairs(topic_pairs, tmp_path):
    result = train_router("mf", None, topic_pairs, tmp_path / "mf", tracking=OFF, progress=False)
    router = result.router
    assert router.config.source == "preferences" and router.cost_weight_ is None
    q = router.predict(["Solve for x: 3x + 2 = 11.", "Describe the causes of the war that began in 1914."]).quality
    ms, hs = router.models.index("math-small"), router.models.index("history-small")
    assert q[0, ms] > q[0, hs] and q[1, hs] > q[1, ms]
    report = evaluate_router(router, load_dataset(topic_pairs), "test")
    assert report["pairs"]["accuracy"] > 0.9


def test_both_losses_on_outcome_data(topics, tmp_path):
    result = train_router("mf", MFConfig(source="both", max_epochs=5), topics, tmp_path / "mf", tracking=OFF, progress=False)
    assert load_router(tmp_path / "mf").config.source == "both"
    assert np.isfinite(result.router.predict(["What is 2+2?"]).quality).all()


def test_config_errors_and_clear_refusals(topic_pairs, tmp_path):
    with pytest.raises(ConfigError, match="router.dim must be >= 1"):
        MFConfig(dim=0)
    with pytest.raises(ConfigError, match="router.source must be one of"):
        MFConfig(source="pairs")
    with pytest.raises(UserError, match="outcomes"):
        train_router("mf", MFConfig(source="outcomes"), topic_pairs, tmp_path / "x", tracking=OFF, progress=False)
