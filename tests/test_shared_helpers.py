"""The helpers that replaced copied code: atomic single-file writes, the lazy encoder, the trainer builder."""

from __future__ import annotations

import os

import pytest

from routerzoo.data.fsutil import atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "sub" / "report.json"
    atomic_write_text(out, "old\n")
    atomic_write_text(out, "new\n")
    assert out.read_text() == "new\n"
    assert sorted(os.listdir(out.parent)) == ["report.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    out = tmp_path / "plot.png"
    atomic_write_bytes(out, b"v1")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(out, b"v2")
    assert out.read_bytes() == b"v1"
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]


def test_every_lazy_embed_is_the_shared_one():
    from routerzoo.routers.core.base import Router
    from routerzoo.routers.core.fit_context import DeferralFitContext
    from routerzoo.routers.deferral.posthoc import PostHocDeferral
    from routerzoo.routers.deferral.prompt_response import PromptResponseScorer
    from routerzoo.routers.encoders.lazy import LazyEncoding
    from routerzoo.routers.policies.mdp import MDPPolicy

    for cls in (Router, DeferralFitContext, MDPPolicy, PostHocDeferral, PromptResponseScorer):
        assert cls.embed is LazyEncoding.embed, cls
    ctx = DeferralFitContext(train=None)
    assert ctx._encoder is None  # constructing does no I/O
    assert ctx._encoder_id() == "sentence-transformers/all-MiniLM-L6-v2"


def test_router_without_encoder_refuses_to_embed():
    from routerzoo.routers.kinds.baselines import RandomRouter

    with pytest.raises(TypeError, match="has no encoder"):
        RandomRouter(models=["a", "b"]).embed(["hi"])


def test_trainer_builder_defaults_and_overrides():
    pytest.importorskip("lightning")
    from routerzoo.training.lightning_utils import make_trainer

    t = make_trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    assert t.checkpoint_callback is None and t.max_epochs == 1
