"""Stacking router: members trained once, weights on validation, one artifact with prefixed tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ENCODER_ATOL

from routerzoo.data.dataset import load_dataset
from routerzoo.data.fsutil import file_sha256
from routerzoo.errors import ConfigError, UserError
from routerzoo.evaluation.runner import evaluate_router
from routerzoo.routers import load_router
from routerzoo.routers.kinds.stack import StackConfig, simplex_grid
from routerzoo.training.train import TrackingConfig, train_router


def test_simplex_grid():
    g = simplex_grid(3, 0.5)
    assert g.shape == (6, 3)
    np.testing.assert_allclose(g.sum(axis=1), 1.0)


def test_stack_holds_one_kind_twice_with_configs_per_member(topic_dataset, tmp_path):
    config = StackConfig(members=["knn", "knn"], configs=[{"k": 3}, {"k": 20}], step=0.25)
    result = train_router("stack", config, topic_dataset, tmp_path / "kk", tracking=TrackingConfig(enabled=False), progress=False)
    assert [c["k"] for c in result.router.config.configs] == [3, 20] and not result.router.config.member_configs
    loaded = load_router(tmp_path / "kk")
    prompts = ["Solve for x: 3x + 1 = 7.", "Who painted the Mona Lisa?"]
    np.testing.assert_allclose(loaded.predict(prompts).quality, result.router.predict(prompts).quality, atol=ENCODER_ATOL)
    assert [m.config.k for m in loaded.members_] == [3, 20]
    with pytest.raises(ConfigError, match="names a kind twice"):
        StackConfig(members=["knn", "knn"])
    with pytest.raises(ConfigError, match="2 members"):
        StackConfig(members=["knn", "knn"], configs=[{"k": 3}])


def test_stack_trains_saves_and_loads(topic_dataset, tmp_path):
    config = StackConfig(members=["knn", "cluster"], member_configs={"knn": {"k": 10}}, step=0.25)
    result = train_router("stack", config, topic_dataset, tmp_path / "st", tracking=TrackingConfig(enabled=False), progress=False)
    router = result.router
    assert router.config.members == ["knn", "cluster"]
    assert router.config.member_configs["knn"]["k"] == 10 and router.config.member_configs["cluster"]["k"] >= 1
    np.testing.assert_allclose(router.stack_weights_.sum(), 1.0)
    from safetensors.numpy import load_file

    names = set(load_file(str(tmp_path / "st" / "weights.safetensors")))
    assert "stack_weights" in names and "m0.knn.embeddings" in names and "m1.cluster.centroids" in names
    loaded = load_router(tmp_path / "st")
    prompts = ["Solve for x: 3x + 2 = 11.", "Who signed the treaty concluded in the year 1648?"]
    np.testing.assert_allclose(loaded.predict(prompts).quality, router.predict(prompts).quality, rtol=0, atol=ENCODER_ATOL)
    report = evaluate_router(loaded, load_dataset(topic_dataset), "test")
    assert report["gap_closed"] > 0.4, report["gap_closed"]
    # a member's tensors missing: a clear error naming the member
    from safetensors.numpy import save_file

    cfg = json.loads((tmp_path / "st" / "config.json").read_text())
    tensors = {k: v for k, v in load_file(str(tmp_path / "st" / "weights.safetensors")).items() if not k.startswith("m1.")}
    save_file(tensors, str(tmp_path / "st" / "weights.safetensors"))
    cfg["weights_sha256"] = file_sha256(tmp_path / "st" / "weights.safetensors")  # the hash is required: recompute it
    (tmp_path / "st" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="stack member 1"):
        load_router(tmp_path / "st")


def test_config_errors():
    with pytest.raises(ConfigError, match="router.members"):
        StackConfig(members=[])
    with pytest.raises(ConfigError, match="cannot include"):
        StackConfig(members=["knn", "oracle"])
    with pytest.raises(ConfigError, match="not in router.members"):
        StackConfig(members=["knn"], member_configs={"mf": {}})
    with pytest.raises(ConfigError, match="router.step"):
        StackConfig(step=0.3)
