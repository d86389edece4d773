"""Learned routers must learn: on data where the right cheap model depends on the topic, kNN and
the MLP close most of the zero-router → oracle gap on held-out prompts; random does not."""

import pytest

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers import load_router
from routerzoo.routers.kinds.baselines import RandomConfig
from routerzoo.routers.kinds.knn import KNNConfig
from routerzoo.routers.kinds.mlp import MLPConfig
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


@pytest.mark.parametrize("select_by,better", [("aiq", max), ("mse", min)])
def test_knn_selects_k_on_validation(select_by, better, data, tmp_path):
    config = KNNConfig(k_candidates=[1, 5, 40, 10_000], select_by=select_by)
    result = train_router("knn", config, data, tmp_path / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    m = result.fit_metrics
    assert "val_aiq_k10000" not in m  # k above half the training set is not tried
    assert {"val_mse_k1", "val_aiq_k5", "val_aiq_k40"} <= set(m)
    tried = {k: m[f"val_{select_by}_k{k}"] for k in (1, 5, 40)}
    assert tried[m["k"]] == better(tried.values())
