"""Clustering router: k-means finds the topics; per-cluster tables route by topic."""

from __future__ import annotations

import numpy as np
import pytest

from routerzoo.data.dataset import load_dataset
from routerzoo.errors import ConfigError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers.kinds.cluster import ClusterConfig, cluster_means, spherical_kmeans
from routerzoo.training.train import TrackingConfig, train_router


def test_spherical_kmeans_separates_blobs_deterministically():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 5
    x = np.concatenate([c + rng.normal(size=(50, 8)) for c in centres])
    c1, labels = spherical_kmeans(x, 3, np.random.default_rng(1))
    c2, labels2 = spherical_kmeans(x, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(labels, labels2)
    for block in range(3):
        assert len(set(labels[block * 50:(block + 1) * 50])) == 1
    assert len(set(labels)) == 3
    np.testing.assert_allclose(np.linalg.norm(c1, axis=1), 1.0, rtol=1e-6)


def test_cluster_means_shrink_towards_the_global_mean():
    values = np.array([[1.0, np.nan], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    raw = cluster_means(labels, values, 2, prior=0.0)
    np.testing.assert_allclose(raw, [[1.0, 0.0], [0.0, 0.5]])
    shrunk = cluster_means(labels, values, 2, prior=1e6)
    np.testing.assert_allclose(shrunk, [[0.5, 1 / 3], [0.5, 1 / 3]], atol=1e-5)


def test_learns_topics(topic_dataset, tmp_path):
    result = train_router("cluster", None, topic_dataset, tmp_path / "c", tracking=TrackingConfig(enabled=False), progress=False)
    assert result.router.config.k == result.fit_metrics["k"] >= 1
    report = evaluate_router(result.router, load_dataset(topic_dataset), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]


def test_config_errors():
    with pytest.raises(ConfigError, match="router.k must be >= 1"):
        ClusterConfig(k=0)
    with pytest.raises(ConfigError, match="router.prior must be >= 0"):
        ClusterConfig(prior=-1)
    with pytest.raises(ConfigError, match="router.select_by"):
        ClusterConfig(select_by="f1")
