"""Fine-tuned encoder router: end-to-end training, self-contained artifact, freezing, accumulation, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from routerzoo.data.dataset import load_dataset
from routerzoo.data.fsutil import file_sha256
from routerzoo.errors import ConfigError, UserError
from routerzoo.routers import load_router
from routerzoo.routers.kinds.finetune import FILE_PREFIX, MODEL_CONFIG_FILE, FinetuneConfig
from routerzoo.training.train import TrackingConfig, train_router

OFF = TrackingConfig(enabled=False)
# small and quick: the last layer and the heads learn, short prompts, few epochs
FAST = dict(max_length=32, freeze_layers=5, max_epochs=3, batch_size=16, head_lr=5e-3, lr=1e-4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("finetune")
    data = save_dataset(make_dataset(topic_outcomes(30), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True)),
                        root / "data")
    result = train_router("finetune", FinetuneConfig(**FAST), data, root / "ft", tracking=OFF, progress=False)
    return root, data, result


def test_learns_topics_and_artifact_is_self_contained(trained, monkeypatch):
    root, data, result = trained
    config = json.loads((result.router_dir / "config.json").read_text())
    assert config["encoder"] is None  # the router reads text; its encoder lives in its weights
    assert config["config"]["base_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["config"]["precision"] == "32-true"  # "auto" resolved on a CPU machine
    tensors = load_file(str(result.router_dir / "weights.safetensors"))
    files = {k[len(FILE_PREFIX):] for k in tensors if k.startswith(FILE_PREFIX)}
    assert MODEL_CONFIG_FILE in files and "tokenizer_config.json" in files
    # routing needs neither the hub nor the base model's folder
    monkeypatch.setattr("routerzoo.routers.encoders.encoder.resolve_encoder_path", lambda _: "/nonexistent")
    router = load_router(result.router_dir)
    test = load_dataset(data).outcome_matrix("test")
    q = router.predict(test.prompts).quality
    math = np.array([pid.split("-")[1] == "math" for pid in test.prompt_ids])
    j_math, j_hist = router.models.index("math-small"), router.models.index("history-small")
    # the success head tells the topics apart: math-small is preferred on math prompts, history-small on history
    assert (q[math, j_math] - q[math, j_hist]).mean() > 0.1
    assert (q[~math, j_hist] - q[~math, j_math]).mean() > 0.1


def test_frozen_layers_do_not_move(trained):
    _, _, result = trained
    from transformers import AutoModel

    from routerzoo.routers.encoders.encoder import resolve_encoder_path

    base = AutoModel.from_pretrained(resolve_encoder_path(result.router.config.base_encoder), use_safetensors=True).state_dict()
    tuned = {k[len("encoder."):]: v for k, v in result.router.net_.state_dict().items() if k.startswith("encoder.")}
    assert np.array_equal(tuned["embeddings.word_embeddings.weight"].numpy(), base["embeddings.word_embeddings.weight"].numpy())
    assert np.array_equal(tuned["encoder.layer.4.output.dense.weight"].numpy(), base["encoder.layer.4.output.dense.weight"].numpy())
    assert not np.array_equal(tuned["encoder.layer.5.output.dense.weight"].numpy(), base["encoder.layer.5.output.dense.weight"].numpy())
    assert result.fit_metrics["trainable_params"] < 2_500_000  # one layer (1.8M) and the heads, not 22.7M


def test_gradient_accumulation_takes_fewer_steps(trained, tmp_path):
    _, data, result = trained
    again = train_router("finetune", FinetuneConfig(**{**FAST, "max_epochs": 1, "accumulate_grad_batches": 2, "freeze_layers": 6}),
                         data, tmp_path / "acc", tracking=OFF, progress=False)
    per_epoch = result.fit_metrics["steps"] / result.fit_metrics["epochs"]
    assert again.fit_metrics["steps"] == int(np.ceil(per_epoch / 2))


def test_tampered_artifact_and_bad_options_fail_clearly(trained, tmp_path):
    _, data, result = trained
    bad = tmp_path / "bad"
    shutil.copytree(result.router_dir, bad)
    tensors = load_file(str(bad / "weights.safetensors"))
    del tensors[FILE_PREFIX + MODEL_CONFIG_FILE]
    save_file(tensors, str(bad / "weights.safetensors"))
    cfg = json.loads((bad / "config.json").read_text())
    cfg["weights_sha256"] = file_sha256(bad / "weights.safetensors")  # the hash is required: recompute it
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="model_config.json"):
        load_router(bad)
    with pytest.raises(ConfigError, match="router.freeze_layers 9: the encoder has 6 layers"):
        train_router("finetune", FinetuneConfig(freeze_layers=9), data, tmp_path / "f", tracking=OFF, progress=False)
    with pytest.raises(ConfigError, match="router.precision"):
        FinetuneConfig(precision="fp8")
    with pytest.raises(UserError, match="router.base_encoder"):
        train_router("finetune", FinetuneConfig(base_encoder=str(tmp_path / "nowhere")), data, tmp_path / "g",
                     tracking=OFF, progress=False)
