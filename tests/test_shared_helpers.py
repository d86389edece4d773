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


def test_durable_atomic_write_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    atomic_write_bytes(tmp_path / "fast.bin", b"x")
    assert synced == []
    atomic_write_bytes(tmp_path / "state.bin", b"y", durable=True)
    assert len(synced) == 2  # the file before the rename, the folder after it
    assert (tmp_path / "state.bin").read_bytes() == b"y"
    assert sorted(os.listdir(tmp_path)) == ["fast.bin", "state.bin"]


def test_cancel_task_stops_a_loop_and_reports_a_loop_that_died():
    import asyncio

    from routerzoo.serving.worker import cancel_task, start_task

    async def forever():
        while True:
            await asyncio.sleep(1)

    async def broken():
        raise ValueError("bug in the loop")

    async def main():
        await cancel_task(None)  # never started: nothing to do
        task = start_task(forever(), "test-loop")
        assert task.get_name() == "test-loop"
        await asyncio.sleep(0)
        await cancel_task(task)
        assert task.cancelled()
        died = start_task(broken(), "test-broken")
        await asyncio.sleep(0)
        with pytest.raises(ValueError, match="bug in the loop"):
            await cancel_task(died)

    asyncio.run(main())


@pytest.mark.parametrize("module, name", [
    ("mf", "MFConfig"), ("routerdc", "RouterDCConfig"), ("finetune", "FinetuneConfig"), ("mlp", "MLPConfig"),
    ("scalarised", "ScalarisedConfig"), ("zooter", "ZooterConfig"),
])
def test_fit_fields_are_checked_once_with_the_field_named(module, name):
    import importlib

    from routerzoo.errors import ConfigError

    cls = getattr(importlib.import_module(f"routerzoo.routers.kinds.{module}"), name)
    cls()  # the defaults are valid
    for field_name, value, message in (("lr", 0.0, "router.lr must be > 0"),
                                       ("weight_decay", -1.0, "router.weight_decay must be >= 0"),
                                       ("batch_size", 0, "router.batch_size must be >= "),
                                       ("patience", 0, "router.patience must be >= 1"),
                                       ("dropout", 1.0, r"router.dropout must be in \[0, 1\)")):
        with pytest.raises(ConfigError, match=message):
            cls(**{field_name: value})
    if hasattr(cls(), "accelerator"):
        with pytest.raises(ConfigError, match="router.accelerator must be one of"):
            cls(accelerator="tpu")
        with pytest.raises(ConfigError, match="router.devices must be"):
            cls(devices="two")


@pytest.mark.parametrize("module, name", [("elo", "EloConfig"), ("sw_elo", "SWEloConfig"), ("eagle", "EagleConfig")])
def test_rating_fields_are_checked_once(module, name):
    import importlib

    from routerzoo.errors import ConfigError

    cls = getattr(importlib.import_module(f"routerzoo.routers.kinds.{module}"), name)
    with pytest.raises(ConfigError, match="router.l2 must be > 0"):
        cls(l2=0.0)
    with pytest.raises(ConfigError, match="router.source must be"):
        cls(source="votes")


def test_state_arrays_give_state_and_fitted_attributes():
    import numpy as np

    from routerzoo.routers.core.base import NotFittedError, Router

    class Toy(Router):
        kind = "toy"
        Config = dict
        state_arrays = ("table", "bias")

        def _predict_prompts(self, prompts):
            return np.tile(self.table_ + self.bias_, (len(prompts), 1)), None

    toy = Toy(models=["a", "b"])
    assert toy.fitted_attributes() == ["table_", "bias_"]
    with pytest.raises(NotFittedError, match="no table_"):
        toy.predict(["hi"])
    toy.table_, toy.bias_ = np.array([0.2, 0.4]), np.array([0.1, 0.1])
    assert list(toy.state()) == ["table", "bias"] and toy.state()["table"] is toy.table_
    np.testing.assert_allclose(toy.predict(["hi"]).quality, [[0.3, 0.5]])
