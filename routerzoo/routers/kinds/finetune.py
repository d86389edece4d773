"""Fine-tuned encoder router: a transformer encoder trained end to end with a multi-label head.

Where the MLP router reads frozen sentence embeddings, this router fine-tunes the encoder itself
(default: the offline all-MiniLM-L6-v2; any Hugging Face id or local folder of a BERT-like encoder):
tokens → encoder → mean pooling over the attention mask → dropout → one logit per candidate model
(sigmoid: P(model j answers well)), and optionally a second head predicting each model's
standardised log cost. Training (masked BCE on outcomes plus the cost loss, as the MLP's) is a
LightningModule in :mod:`routerzoo.training.finetune`; this module is inference only: torch and
``transformers``, no Lightning.

The artifact is self-contained and pickle-free: ``weights.safetensors`` holds the fine-tuned
encoder and heads (``net.*``), the cost standardisation, and the encoder's architecture config and
tokenizer files as UTF-8 byte tensors (``file/<name>``), so routing needs neither the hub nor the
base model's folder, and the artifact keeps the two-file layout every router shares.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router
from routerzoo.routers.core.fit_config import NetworkFitConfig

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")
#: prefix of the byte tensors that carry the encoder's config and tokenizer files
FILE_PREFIX = "file/"
MODEL_CONFIG_FILE = "model_config.json"


@dataclass
class FinetuneConfig(NetworkFitConfig):
    """Fine-tuned encoder router hyper-parameters (and the fit fields of :class:`NetworkFitConfig`).

    Attributes:
        base_encoder: Hugging Face id or local folder of the encoder to start from; None for
            ``--features.encoder`` (the artifact stores the one used).
        max_length: tokens per prompt at most (longer prompts are truncated, in training and routing).
        freeze_layers: keep the embeddings and the first N transformer layers frozen (0 = train all);
            fewer trainable weights: faster steps, less overfitting on small datasets.
        dropout: dropout on the pooled representation before the heads.
        predict_cost: also learn each model's per-prompt log cost (else the mean cost is used).
        cost_loss_weight: weight of the cost loss against the quality BCE.
        lr: AdamW learning rate of the encoder.
        head_lr: AdamW learning rate of the heads (new weights learn faster than pretrained ones).
        warmup_ratio: share of the optimiser steps with a linear learning-rate warm-up (then linear decay).
        batch_size: prompts per forward pass.
        accumulate_grad_batches: forward passes per optimiser step (effective batch = batch_size × this).
        precision: Lightning precision: "auto" ("bf16-mixed" on a CUDA GPU with bf16, else
            "32-true"), "32-true", "bf16-mixed", "16-mixed" or "bf16-true". The artifact stores the one used.
    """

    base_encoder: str | None = None
    max_length: int = 128
    freeze_layers: int = 0
    dropout: float = 0.1
    predict_cost: bool = True
    cost_loss_weight: float = 0.5
    lr: float = 3e-5
    head_lr: float = 1e-3
    warmup_ratio: float = 0.1
    batch_size: int = 16
    accumulate_grad_batches: int = 1
    max_epochs: int = 4
    patience: int = 2
    precision: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if self.base_encoder is not None and not self.base_encoder.strip():
            raise ConfigError("router.base_encoder must name a model id or folder (or be null for --features.encoder)")
        if self.max_length < 2:
            raise ConfigError(f"router.max_length must be >= 2, got {self.max_length}")
        if self.freeze_layers < 0:
            raise ConfigError(f"router.freeze_layers must be >= 0, got {self.freeze_layers}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"router.dropout must be in [0, 1), got {self.dropout}")
        if not self.head_lr > 0:
            raise ConfigError(f"router.head_lr must be > 0, got {self.head_lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"router.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.accumulate_grad_batches < 1:
            raise ConfigError(f"router.accumulate_grad_batches must be >= 1, got {self.accumulate_grad_batches}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"router.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")


def build_network(encoder, n_models: int, dropout: float, predict_cost: bool):
    """Encoder + mean pooling + quality head (m logits) + optional cost head (m log costs).

    Args:
        encoder: a ``transformers`` encoder model (``last_hidden_state`` of shape (B, T, h)).
    """
    import torch
    from torch import nn

    hidden = int(encoder.config.hidden_size)

    class FinetuneNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(dropout)
            self.quality_head = nn.Linear(hidden, n_models)
            self.cost_head = nn.Linear(hidden, n_models) if predict_cost else None

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> tuple[torch.Tensor, torch.Tensor | None]:
            """Token ids and mask (B, T) → quality logits (B, m), standardised log-cost (B, m) or None."""
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            z = self.dropout(pooled)
            return self.quality_head(z), (self.cost_head(z) if self.cost_head is not None else None)

    return FinetuneNet()


def file_tensors(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Small text files as uint8 tensors named ``file/<name>`` (safetensors holds bytes, never pickles)."""
    return {f"{FILE_PREFIX}{name}": np.frombuffer(data, dtype=np.uint8).copy() for name, data in sorted(files.items())}


class FinetuneRouter(Router):
    """A fine-tuned transformer encoder with a multi-label head; reads prompt text.

    State: the network's weights (``net.*``), ``log_cost_mean`` / ``log_cost_std`` (m,), and the
    encoder config and tokenizer files (``file/*``, uint8).
    """

    kind = "finetune"
    Config = FinetuneConfig
    uses_embeddings = False
    #: prompts per inference forward pass
    BATCH = 32

    def set_network(self, net, tokenizer, files: dict[str, bytes], log_cost_mean: np.ndarray,
                    log_cost_std: np.ndarray) -> FinetuneRouter:
        """Install a trained network, its tokenizer and the files they were built from."""
        self.net_ = net.eval()
        self.tokenizer_ = tokenizer
        self.files_ = dict(files)
        self.log_cost_mean_ = np.asarray(log_cost_mean, dtype=np.float32)
        self.log_cost_std_ = np.asarray(log_cost_std, dtype=np.float32)
        return self

    def fitted_attributes(self) -> list[str]:
        return ["net_", "tokenizer_"]

    def state(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v.detach().cpu().float().numpy() for k, v in self.net_.state_dict().items()}
        out["log_cost_mean"] = self.log_cost_mean_
        out["log_cost_std"] = self.log_cost_std_
        out.update(file_tensors(self.files_))
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        files = {k[len(FILE_PREFIX):]: bytes(np.asarray(v, dtype=np.uint8).tobytes()) for k, v in tensors.items()
                 if k.startswith(FILE_PREFIX)}
        if MODEL_CONFIG_FILE not in files:
            raise UserError(f"weights lack tensor {FILE_PREFIX + MODEL_CONFIG_FILE!r} needed by a 'finetune' router")
        try:
            model_config = json.loads(files[MODEL_CONFIG_FILE].decode("utf-8"))
            hf_config = AutoConfig.for_model(**model_config)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise UserError(f"weights: {FILE_PREFIX}{MODEL_CONFIG_FILE} is not a usable encoder config ({exc})") from None
        with tempfile.TemporaryDirectory(prefix="routerzoo-tok-") as tmp:
            for name, data in files.items():
                if name != MODEL_CONFIG_FILE:
                    if "/" in name or name.startswith("."):
                        raise UserError(f"weights: tokenizer file name {name!r} is not a plain file name")
                    (Path(tmp) / name).write_bytes(data)
            try:
                tokenizer = AutoTokenizer.from_pretrained(tmp)
            except (OSError, ValueError) as exc:
                raise UserError(f"weights: the stored tokenizer files cannot be loaded ({str(exc).splitlines()[0]})") from None
        m = len(self.models)
        net = build_network(AutoModel.from_config(hf_config), m, self.config.dropout, self.config.predict_cost)
        expected = net.state_dict()
        for name, value in expected.items():
            self._tensor(tensors, f"net.{name}", tuple(value.shape))
        extra = sorted(k for k in tensors if k.startswith("net.") and k[4:] not in expected)
        if extra:
            raise UserError(f"weights: unexpected tensor(s) {extra[:3]} for this 'finetune' router")
        net.load_state_dict({k: torch.from_numpy(np.array(tensors[f"net.{k}"])).to(v.dtype) for k, v in expected.items()})
        self.set_network(net, tokenizer, files, self._tensor(tensors, "log_cost_mean", (m,)),
                         self._tensor(tensors, "log_cost_std", (m,)))

    def tokenize(self, prompts: list[str]) -> dict:
        """Token ids and attention mask (n, T) for ``prompts`` (padded to the longest, truncated)."""
        return self.tokenizer_(prompts, padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt")

    def _predict_prompts(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        quality, cost = [], []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.BATCH):
                enc = self.tokenize(prompts[start:start + self.BATCH])
                logits, log_cost = self.net_(**enc)
                quality.append(torch.sigmoid(logits.float()).numpy())
                if log_cost is not None:
                    cost.append(log_cost.float().numpy())
        q = np.concatenate(quality).astype(np.float64)
        if not cost:
            return q, None
        return q, np.exp(np.concatenate(cost) * self.log_cost_std_ + self.log_cost_mean_).astype(np.float64)
