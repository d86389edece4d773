"""Prompt features beyond the embedding: prompt length and an optional category with a learned "unknown"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ENCODER_ATOL

from routerzoo.data.dataset import load_dataset
from routerzoo.errors import ConfigError, UserError
from routerzoo.routers import load_router
from routerzoo.routers.core.features import PromptFeatures, feature_matrix, token_counts
from routerzoo.routers.kinds.mlp import MLPConfig
from routerzoo.training.train import TrackingConfig, train_router


def test_feature_matrix_length_and_category():
    spec = PromptFeatures(prompt_length=True, category=True, categories=["history", "math"])
    prompts = ["Hi", "Explain in detail " * 20, "What is 2+2?"]
    x = feature_matrix(spec, prompts, ["math", None, "history"])
    assert x.shape == (3, spec.width) == (3, 4) and x.dtype == np.float32
    assert x[1, 0] > x[2, 0] > x[0, 0]  # longer prompts, larger length feature
    np.testing.assert_array_equal(x[:, 1:], [[0, 1, 0], [0, 0, 1], [1, 0, 0]])  # None → the unknown slot
    np.testing.assert_array_equal(feature_matrix(spec, prompts)[:, 1:], [[0, 0, 1]] * 3)  # no categories at all: unknown
    assert token_counts(["hello world"]).tolist() == [2.0]
    with pytest.raises(UserError, match="category 'maths' .* not one the router was trained on"):
        feature_matrix(spec, prompts, ["maths", None, None])
    assert PromptFeatures(category=True).width == 0  # no vocabulary (data without categories): nothing added
    with pytest.raises(ConfigError, match="category_dropout"):
        PromptFeatures(category_dropout=2.0)


def test_mlp_with_features_routes_with_and_without_a_category(topic_dataset, tmp_path):
    features = PromptFeatures(prompt_length=True, category=True, category_dropout=0.3)
    result = train_router("mlp", MLPConfig(max_epochs=30, features=features), topic_dataset, tmp_path / "m",
                          tracking=TrackingConfig(enabled=False), progress=False)
    stored = json.loads((result.router_dir / "config.json").read_text())["config"]["features"]
    assert stored == {"prompt_length": True, "category": True, "category_dropout": 0.3, "categories": ["history", "math"]}
    router = load_router(result.router_dir)
    test = load_dataset(topic_dataset).outcome_matrix("test")
    plain = router.predict(test.prompts)  # serving: no category needed
    np.testing.assert_allclose(plain.quality, result.router.predict(test.prompts).quality, rtol=0, atol=ENCODER_ATOL)
    np.testing.assert_array_equal(router.predict_with_categories(test.prompts, [None] * len(test.prompts)).quality, plain.quality)
    told = router.predict_with_categories(test.prompts, test.categories).quality
    lied = router.predict_with_categories(test.prompts, ["history" if c == "math" else "math" for c in test.categories]).quality
    j = router.models.index("math-small")
    math = np.array([c == "math" for c in test.categories])
    # the network reads the category: claiming "math" raises math-small's predicted success
    assert (told[math, j] - lied[math, j]).mean() > 0.05 and (lied[~math, j] - told[~math, j]).mean() > 0.05


def test_cross_validation_and_auto_read_the_prompt_features(topic_dataset, tmp_path):
    """CV predicts held-out prompts from cached embeddings: a router that also reads prompt length must
    get the texts too (it raised a shape error, a traceback out of `routerzoo train`), and an ensemble
    holding such a member must route from prompts after a save and load."""
    from routerzoo.routers.kinds.stack import StackConfig
    from routerzoo.training.auto import AutoConfig
    from routerzoo.training.cv import CVConfig

    mlp = MLPConfig(max_epochs=5, features=PromptFeatures(prompt_length=True))
    result = train_router("mlp", mlp, topic_dataset, tmp_path / "m", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3))
    assert result.cv.complete and result.cv.mean() is not None and np.isfinite(result.cv.oof_quality).all()

    auto = AutoConfig(candidates=["knn:k=20", "mlp:features={prompt_length: true},max_epochs=5"], repeats=1, time_limit=120)
    result = train_router("auto", auto, topic_dataset, tmp_path / "a", progress=False, cv=CVConfig(folds=3))
    assert all("skipped" not in r for r in result.auto["candidates"]), result.auto["candidates"]
    import mlflow  # the candidate's name has characters MLflow refuses in a metric key: they are replaced

    logged = mlflow.get_run(result.run_id).data.metrics
    assert "auto.mlp.features_prompt_length. true_.max_epochs5.cv_gap_closed_mean" in logged, [k for k in logged if "mlp" in k]

    stack = StackConfig(members=["knn", "mlp"], configs=[{"k": 20}, {"max_epochs": 5, "features": {"prompt_length": True}}])
    result = train_router("stack", stack, topic_dataset, tmp_path / "s", tracking=TrackingConfig(enabled=False), progress=False)
    router = load_router(result.router_dir)
    prompts = load_dataset(topic_dataset).outcome_matrix("test").prompts
    pred = router.predict(prompts)
    np.testing.assert_allclose(pred.quality, result.router.predict(prompts).quality, rtol=0, atol=ENCODER_ATOL)
    emb = router.embed(prompts)
    np.testing.assert_allclose(router.predict_embeddings(emb, prompts).quality, pred.quality, rtol=0, atol=ENCODER_ATOL)
    with pytest.raises(ValueError, match="also reads 1 prompt feature"):
        router.predict_embeddings(emb)  # without the texts: says what is missing
