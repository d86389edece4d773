"""Fine-tune a transformer encoder as a router (:mod:`routerzoo.routers.kinds.finetune`) with Lightning.

Loss: the MLP router's (masked multi-label BCE of each model's success against quality in [0, 1],
plus a masked squared error on each model's standardised log cost). AdamW with two learning rates
(pretrained encoder, new heads), linear warm-up then linear decay, gradient accumulation and mixed
precision from the config ("bf16-mixed" by default on a bf16-capable CUDA GPU). Early stopping on
the validation BCE; the best epoch's weights are kept in memory (no pickled checkpoints).
Deterministic under the context's seed on CPU.
"""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.encoders.encoder import resolve_encoder_path
from routerzoo.routers.kinds.finetune import (
    MODEL_CONFIG_FILE,
    FinetuneConfig,
    FinetuneRouter,
    build_network,
)
from routerzoo.training.context import FitContext
from routerzoo.training.lightning_utils import early_stopped_trainer, run_fit, seeded_loader, trainer_kwargs
from routerzoo.training.mlp import SuccessModule, log_cost_stats


class PromptOutcomes(Dataset):
    """Prompt texts with their (m,) quality, quality mask, standardised log cost and cost mask."""

    def __init__(self, prompts: list[str], quality: np.ndarray, cost: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.prompts = list(prompts)
        q_mask = ~np.isnan(quality)
        c_mask = ~np.isnan(cost) & (np.nan_to_num(cost) > 0)
        log_cost = (np.log(np.where(c_mask, cost, 1.0)) - mean) / std
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        self.quality, self.q_mask = as_t(np.nan_to_num(quality)), as_t(q_mask)
        self.log_cost, self.c_mask = as_t(np.where(c_mask, log_cost, 0.0)), as_t(c_mask)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int):
        return i


class Collate:
    """Indices → a tokenised batch (dynamic padding) with its targets."""

    def __init__(self, data: PromptOutcomes, tokenizer, max_length: int):
        self.data, self.tokenizer, self.max_length = data, tokenizer, max_length

    def __call__(self, idx: list[int]) -> dict:
        d = self.data
        enc = self.tokenizer([d.prompts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"inputs": dict(enc), "quality": d.quality[idx], "q_mask": d.q_mask[idx],
                "log_cost": d.log_cost[idx], "c_mask": d.c_mask[idx]}


class FinetuneModule(SuccessModule):
    """LightningModule around :func:`routerzoo.routers.kinds.finetune.build_network`: the MLP's
    losses on tokenised batches, two learning rates and a warm-up schedule."""

    @staticmethod
    def _batch_size(batch) -> int:
        return len(batch["quality"])

    def _outputs(self, batch):
        logits, cost_pred = self.net(**batch["inputs"])
        return logits, cost_pred, (batch["quality"], batch["q_mask"], batch["log_cost"], batch["c_mask"])

    def configure_optimizers(self):
        c = self.config
        encoder = [p for p in self.net.encoder.parameters() if p.requires_grad]
        heads = [p for n, p in self.net.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": heads, "lr": c.head_lr}]
        if encoder:
            groups.append({"params": encoder, "lr": c.lr})
        opt = torch.optim.AdamW(groups, weight_decay=c.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(c.warmup_ratio * total)

        def scale(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(total - warmup, 1))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, scale)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def resolve_precision(precision: str, accelerator: str) -> str:
    """"auto" → "bf16-mixed" where a bf16-capable CUDA GPU will be used, else "32-true"."""
    if precision != "auto":
        if precision == "16-mixed" and not torch.cuda.is_available():
            raise ConfigError("router.precision '16-mixed' needs a CUDA GPU; use 'bf16-mixed' or '32-true' on CPU")
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def load_base(source: str):
    """(encoder model, tokenizer, sentence-transformers max_seq_length or None) of ``source``."""
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = resolve_encoder_path(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"router.base_encoder {source!r}: cannot load a transformer encoder with safetensors weights "
                        f"({first})") from None
    st = Path(path) / "sentence_bert_config.json"
    max_seq = None
    if st.is_file():
        import json

        max_seq = json.loads(st.read_text()).get("max_seq_length")
    return model, tokenizer, max_seq


def freeze(encoder: torch.nn.Module, n_layers: int) -> int:
    """Freeze the embeddings and the first ``n_layers`` transformer layers; returns the layer count."""
    layers = None
    for name in ("encoder.layer", "layers", "transformer.layer", "encoder.layers"):
        obj = encoder
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        layers = obj
        break
    if n_layers == 0:
        return len(layers) if layers is not None else 0
    if layers is None:
        raise ConfigError(f"router.freeze_layers: cannot find the transformer layers of a {type(encoder).__name__}")
    if n_layers > len(layers):
        raise ConfigError(f"router.freeze_layers {n_layers}: the encoder has {len(layers)} layers")
    emb = getattr(encoder, "embeddings", None)
    for module in ([emb] if emb is not None else []) + list(layers[:n_layers]):
        for p in module.parameters():
            p.requires_grad_(False)
    return len(layers)


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's saved files (``save_pretrained``) as bytes."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="routerzoo-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def fit_finetune(config: FinetuneConfig, ctx: FitContext) -> tuple[FinetuneRouter, dict]:
    """Fine-tune; returns the router (base encoder and precision resolved) with the best validation
    epoch's weights, and fit metrics."""
    train = ctx.require_outcomes("finetune")
    tk = trainer_kwargs(config, ctx)
    base = config.base_encoder or ctx.features.encoder
    precision = tk["precision"] = resolve_precision(tk.get("precision", config.precision), tk.get("accelerator", "auto"))
    config = replace(config, base_encoder=base, precision=precision)
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    encoder, tokenizer, max_seq = load_base(base)
    max_length = min(config.max_length, int(max_seq)) if max_seq else config.max_length
    config = replace(config, max_length=max_length)
    n_layers = freeze(encoder, config.freeze_layers)
    net = build_network(encoder, len(ctx.models), config.dropout, config.predict_cost)

    mean, std = log_cost_stats(train.cost)
    train_ds = PromptOutcomes(train.prompts, train.quality, train.cost, mean, std)
    has_val = ctx.val is not None and len(ctx.val) > 0
    val_ds = PromptOutcomes(ctx.val.prompts, ctx.val.quality, ctx.val.cost, mean, std) if has_val else None
    trainer, keep = early_stopped_trainer(config, ctx, tk, "val_bce", has_val,
                                          accumulate_grad_batches=config.accumulate_grad_batches, num_sanity_val_steps=0)
    train_dl = seeded_loader(train_ds, config.batch_size, ctx.seed, collate_fn=Collate(train_ds, tokenizer, max_length))
    val_dl = (DataLoader(val_ds, batch_size=max(config.batch_size, 64), collate_fn=Collate(val_ds, tokenizer, max_length))
              if has_val else None)
    module = FinetuneModule(net.train(), config)  # from_pretrained returns eval mode: dropout would stay off
    run_fit(trainer, module, train_dl, val_dl)
    if keep.best_state is not None:
        net.load_state_dict(keep.best_state)
    net = net.cpu().float().eval()
    files = tokenizer_files(tokenizer)
    files[MODEL_CONFIG_FILE] = encoder.config.to_json_string().encode("utf-8")
    router = FinetuneRouter(config, **ctx.router_kwargs(encoder=False))
    router.set_network(net, tokenizer, files, mean, std)
    # rebuild through the loading path, so the fitted router and a loaded artifact run the very same module
    router.load_state({k: np.ascontiguousarray(v) for k, v in router.state().items()})
    metrics = {"best_epoch": keep.best_epoch, "epochs": trainer.current_epoch, "precision": precision,
               "trainable_params": int(sum(p.numel() for p in net.parameters() if p.requires_grad)),
               "encoder_layers": n_layers, "steps": int(trainer.global_step), "world_size": int(trainer.world_size)}
    if has_val:
        metrics["val_bce"] = keep.best_score
    return router, metrics
