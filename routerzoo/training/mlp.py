"""Train the MLP classification router with Lightning.

Loss: binary cross-entropy of each model's success (soft targets: quality in [0, 1]), masked where a
model has no outcome for a prompt, plus, when ``predict_cost`` is on, a masked squared error on each
model's standardised log cost. Early stopping watches the validation BCE; the best epoch's weights
are kept in memory (no pickled checkpoints on disk).
"""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from routerzoo.routers.core.features import PromptFeatures, feature_matrix
from routerzoo.routers.kinds.mlp import MLPConfig, MLPRouter
from routerzoo.training.context import FitContext
from routerzoo.training.lightning_utils import (
    TwoLossModule,
    early_stopped_trainer,
    run_fit,
    seeded_loader,
    trainer_kwargs,
)


class SuccessModule(TwoLossModule):
    """LightningModule around :func:`routerzoo.routers.kinds.mlp.build_network` (and, with its own
    batches, the fine-tuned encoder's network): a per-model success classifier with a cost head."""

    loss_names = ("bce", "cost_mse")
    aux_weight = "cost_loss_weight"

    def _outputs(self, batch) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
        """The network's quality logits and log-cost predictions on ``batch``, and the batch's
        (quality, q_mask, log_cost, c_mask) targets, each (B, m)."""
        x, *targets = batch
        logits, cost_pred = self.net(x)
        return logits, cost_pred, tuple(targets)

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE of each model's success (soft targets) where it has an outcome, and the squared error
        of the standardised log cost where it has a cost (0 without a cost head); both in float32,
        since mixed precision gives half-precision outputs."""
        logits, cost_pred, (quality, q_mask, log_cost, c_mask) = self._outputs(batch)
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
        bce = (bce * q_mask).sum() / q_mask.sum().clamp_min(1.0)
        if cost_pred is None:
            return bce, torch.zeros((), device=logits.device)
        mse = (((cost_pred.float() - log_cost) ** 2) * c_mask).sum() / c_mask.sum().clamp_min(1.0)
        return bce, mse


def _tensors(emb: np.ndarray, quality: np.ndarray, cost: np.ndarray, mean: np.ndarray, std: np.ndarray) -> TensorDataset:
    q_mask = ~np.isnan(quality)
    c_mask = ~np.isnan(cost) & (np.nan_to_num(cost) > 0)
    log_cost = (np.log(np.where(c_mask, cost, 1.0)) - mean) / std
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return TensorDataset(
        as_t(emb), as_t(np.nan_to_num(quality)), as_t(q_mask), as_t(np.where(c_mask, log_cost, 0.0)), as_t(c_mask)
    )


def log_cost_stats(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model mean and std (m,) of log cost over observed positive costs."""
    positive = np.where(np.nan_to_num(cost) > 0, cost, np.nan)
    logs = np.log(positive)
    mean = np.nan_to_num(np.nanmean(logs, axis=0), nan=0.0)
    std = np.nan_to_num(np.nanstd(logs, axis=0), nan=1.0)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def resolve_features(spec: PromptFeatures, train) -> PromptFeatures:
    """``spec`` with the training categories as its vocabulary (empty when the data has none)."""
    if not spec.category:
        return replace(spec, categories=[])
    return replace(spec, categories=sorted({c for c in train.categories if c is not None and c == c}))


def with_features(spec: PromptFeatures, emb: np.ndarray, matrix, hide: float = 0.0, seed: int = 0) -> np.ndarray:
    """Embeddings (n, d) with the prompt features appended (n, d + k); a ``hide`` share of the
    categories replaced by "unknown" (seeded), so the network learns to route without one."""
    if not spec.width:
        return emb
    cats = list(matrix.categories) if spec.category else None
    if cats is not None and hide > 0:
        hidden = np.random.default_rng(seed).random(len(cats)) < hide
        cats = [None if h else c for c, h in zip(cats, hidden, strict=True)]
    if cats is not None:
        cats = [c if c in spec.categories else None for c in cats]  # a category unseen in training: unknown
    return np.hstack([emb, feature_matrix(spec, matrix.prompts, cats)])


def fit_mlp(config: MLPConfig, ctx: FitContext) -> tuple[MLPRouter, dict]:
    """Train; returns the router with the best validation epoch's weights and fit metrics."""
    train = ctx.require_outcomes("mlp")

    tk = trainer_kwargs(config, ctx)  # --trainer.* over router.accelerator/devices/strategy; checked to exist
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    config = replace(config, features=resolve_features(config.features, train))
    router = MLPRouter(config, **ctx.router_kwargs(encoder=True))
    train_x = with_features(config.features, ctx.train_embeddings, train, hide=config.features.category_dropout, seed=ctx.seed)
    net = router.network(train_x.shape[1])
    mean, std = log_cost_stats(train.cost)
    train_ds = _tensors(train_x, train.quality, train.cost, mean, std)
    has_val = ctx.val is not None and len(ctx.val) > 0
    val_ds = (_tensors(with_features(config.features, ctx.val_embeddings, ctx.val), ctx.val.quality, ctx.val.cost, mean, std)
              if has_val else None)
    module = SuccessModule(net, config)
    trainer, keep = early_stopped_trainer(config, ctx, tk, "val_bce", has_val)
    train_dl = seeded_loader(train_ds, config.batch_size, ctx.seed)
    val_dl = DataLoader(val_ds, batch_size=1024) if has_val else None
    run_fit(trainer, module, train_dl, val_dl)
    if keep.best_state is not None:
        net.load_state_dict(keep.best_state)
    router.set_network(net.cpu(), mean, std)
    metrics = {"best_epoch": keep.best_epoch, "epochs": trainer.current_epoch, "world_size": int(trainer.world_size)}
    if has_val:
        metrics["val_bce"] = keep.best_score
    return router, metrics
