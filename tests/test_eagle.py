"""Eagle: global Elo mixed with local Elo over the nearest training prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routerzoo.data.dataset import load_dataset
from routerzoo.data.matrix import PreferenceMatrix
from routerzoo.errors import ConfigError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers import load_router
from routerzoo.routers.core.cost import CostModel
from routerzoo.routers.kinds.eagle import EagleConfig, EagleRouter
from routerzoo.routers.kinds.elo import fit_ratings
from routerzoo.routers.kinds.sw_elo import win_matrices
from routerzoo.training.train import TrackingConfig, train_router

OFF = TrackingConfig(enabled=False)


def _pairs():
    # near x (prompts p0, p1): a beats b; near y (p2): b beats a twice, plus a tie
    return PreferenceMatrix(["p0", "p1", "p2", "p2", "p2"], ["x", "x2", "y", "y", "y"], ["a", "b"],
                            np.array([0, 0, 0, 0, 1]), np.array([1, 1, 1, 1, 0]), np.array([1.0, 1.0, 0.0, 0.0, 0.5]),
                            np.ones(5))


def _router(config: EagleConfig, pairs: PreferenceMatrix, emb: np.ndarray) -> EagleRouter:
    _, wins = win_matrices(pairs)
    return EagleRouter(config, models=["a", "b"], cost_model=CostModel.fit(["a", "b"], None), encoder="e").fit_arrays(emb, wins)


EMB = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]], dtype=np.float32)


def test_global_part_is_the_elo_fit_and_local_part_follows_the_neighbourhood():
    pairs = _pairs()
    router = _router(EagleConfig(p=1.0, neighbours=1, l2=1e-3), pairs, EMB)
    # the global ratings are exactly the Elo router's fit of the same comparisons
    np.testing.assert_allclose(router.global_ratings_, fit_ratings(pairs.a, pairs.b, pairs.outcome, pairs.weight, 2, 1e-3), atol=1e-8)
    q = router.predict_embeddings(EMB).quality
    assert np.allclose(q, q[0])  # P = 1: one global ranking for every prompt
    local = _router(EagleConfig(p=0.0, neighbours=1, l2=1e-3), pairs, EMB).predict_embeddings(EMB).quality
    assert local[0, 0] > local[0, 1] and local[2, 1] > local[2, 0]  # near x a leads, near y b leads
    half = _router(EagleConfig(p=0.5, neighbours=1, l2=1e-3), pairs, EMB)
    r = half.ratings(EMB)
    np.testing.assert_allclose(r, 0.5 * router.global_ratings_ + 0.5 * half.local_ratings(EMB, 1))


def test_neighbourhood_size_widens_towards_the_global_ranking():
    pairs = _pairs()
    narrow = _router(EagleConfig(p=0.0, neighbours=1), pairs, EMB).ratings(EMB[:1])
    wide = _router(EagleConfig(p=0.0, neighbours=3), pairs, EMB).ratings(EMB[:1])
    assert narrow[0, 0] - narrow[0, 1] > wide[0, 0] - wide[0, 1]  # all three prompts: y's wins for b count too


def test_learns_topics_and_stores_the_validated_choice(topic_dataset, tmp_path):
    result = train_router("eagle", None, topic_dataset, tmp_path / "e", tracking=OFF, progress=False)
    m = result.fit_metrics
    assert m["p"] in EagleConfig().p_candidates and m["neighbours"] in EagleConfig().neighbours_candidates
    stored = json.loads((result.router_dir / "config.json").read_text())["config"]
    assert (stored["p"], stored["neighbours"]) == (m["p"], m["neighbours"])
    assert any(k.startswith("val_aiq_p") for k in m)  # chosen by validation AIQ, not on test
    report = evaluate_router(load_router(result.router_dir), load_dataset(topic_dataset), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]
    # the global ranking alone cannot tell the topics apart: local information is what routes
    glob = train_router("eagle", EagleConfig(p=1.0, neighbours=10), topic_dataset, tmp_path / "g", tracking=OFF, progress=False)
    assert evaluate_router(glob.router, load_dataset(topic_dataset), "test")["gap_closed"] < report["gap_closed"] - 0.2


def test_config_errors():
    with pytest.raises(ConfigError, match=r"router.p must be in \[0, 1\]"):
        EagleConfig(p=1.5)
    with pytest.raises(ConfigError, match="router.neighbours must be >= 1"):
        EagleConfig(neighbours=0)
    with pytest.raises(ConfigError, match="router.p_candidates"):
        EagleConfig(p_candidates=[])
    with pytest.raises(ConfigError, match="router.l2"):
        EagleConfig(l2=0.0)
