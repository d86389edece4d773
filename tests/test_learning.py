"""Learned routers must learn: on data where the right cheap model depends on the topic, kNN and
the MLP close most of the zero-router → oracle gap on held-out prompts; random does not."""

import pytest

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers import load_router
from routerzoo.training.baselines import RandomConfig
from routerzoo.training.knn import KNNConfig
from routerzoo.training.mlp import MLPConfig
from routerzoo.training.train import TrackingConfig, train_router


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import topic_outcomes

    root = tmp_path_factory.mktemp("learn")
    return save_dataset(make_dataset(topic_outcomes(80, seed=1), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True)), root / "d")


@pytest.mark.parametrize("kind,config,min_gap", [("knn", KNNConfig(), 0.4), ("mlp", MLPConfig(max_epochs=60), 0.4), ("random", RandomConfig(), None)])
def test_gap_closed_on_held_out(kind, config, min_gap, data, tmp_path):
    result = train_router(kind, config, data, tmp_path / kind, tracking=TrackingConfig(enabled=False), progress=False)
    report = evaluate_router(load_router(result.router_dir), load_dataset(data), "test")
    if min_gap is None:
        assert report["gap_closed"] < 0.2
    else:
        assert report["gap_closed"] > min_gap, report["gap_closed"]
        assert report["aiq"]["router"] > report["aiq"]["zero_router"]


def test_knn_selects_k_on_validation(data, tmp_path):
    result = train_router("knn", KNNConfig(k_candidates=[1, 5, 200]), data, tmp_path / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    assert result.fit_metrics["k"] in (1, 5, 200)
    assert {"val_mse_k1", "val_mse_k5"} <= set(result.fit_metrics)
    chosen = result.fit_metrics["k"]
    assert result.fit_metrics[f"val_mse_k{chosen}"] == min(v for k, v in result.fit_metrics.items() if k.startswith("val_mse_k"))
