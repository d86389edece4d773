"""Train the scalarised reward router (:mod:`routerzoo.routers.kinds.scalarised`) with Lightning.

Each training step draws ``draws`` scaled cost weights per prompt: a share ``zero_share`` at λ = 0,
the rest log-uniform in ``lambda_range``; the target of model j is ``q_j − λ̃·c_j / cost_scale``
(masked where the outcome or, at λ > 0, the cost is missing). The squared error is weighted by
``1 / (1 + λ̃·c̃_j)²``: a relative error where cost dominates the reward, so the expensive models at
high λ (rewards of −100s) do not drown the quality differences that decide routing. Validation
uses a fixed grid of λ̃ (0, the slope grid) so early stopping compares like with like.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from routerzoo.routers.kinds.scalarised import ScalarisedConfig, ScalarisedRouter
from routerzoo.training.context import FitContext
from routerzoo.training.loop import fit_module


class RewardModule(L.LightningModule):
    """LightningModule around :func:`routerzoo.routers.kinds.scalarised.build_network`."""

    def __init__(self, net: torch.nn.Module, config: ScalarisedConfig, seed: int):
        super().__init__()
        self.net = net
        self.cfg = config
        self.generator = torch.Generator().manual_seed(seed)
        self.val_grid = torch.tensor([0.0, *config.slope_grid])

    def _loss(self, x, quality, q_mask, cost, c_mask, lam):
        """Weighted masked MSE for samples ``x`` (B, d) at scaled weights ``lam`` (B, 1)."""
        target = quality - lam * cost
        mask = q_mask * torch.where(lam > 0, c_mask, torch.ones_like(c_mask))
        weight = mask / (1.0 + lam * cost) ** 2
        err = (self.net(x, lam) - target) ** 2
        return (err * weight).sum() / mask.sum().clamp_min(1.0)

    def training_step(self, batch, batch_idx):
        x, quality, q_mask, cost, c_mask = (t.repeat(self.cfg.draws, 1) for t in batch)
        b = x.shape[0]
        lo, hi = np.log(self.cfg.lambda_range[0]), np.log(self.cfg.lambda_range[1])
        u = torch.rand(b, 1, generator=self.generator)
        lam = torch.exp(lo + (hi - lo) * u)
        lam = torch.where(torch.rand(b, 1, generator=self.generator) < self.cfg.zero_share, torch.zeros_like(lam), lam)
        loss = self._loss(x, quality, q_mask, cost, c_mask, lam.to(x.device))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        x, quality, q_mask, cost, c_mask = batch
        losses = [self._loss(x, quality, q_mask, cost, c_mask, torch.full((len(x), 1), float(g), device=x.device))
                  for g in self.val_grid]
        self.log("val_loss", torch.stack(losses).mean(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


def cost_scale(cost: np.ndarray) -> float:
    """USD of a typical prompt: the median over models of each model's mean observed cost (> 0)."""
    means = np.nanmean(np.where(np.nan_to_num(cost) > 0, cost, np.nan), axis=0)
    means = means[np.isfinite(means)]
    return float(np.median(means)) if means.size else 1.0


def _tensors(emb: np.ndarray, quality: np.ndarray, cost: np.ndarray, scale: float) -> TensorDataset:
    q_mask = ~np.isnan(quality)
    c_mask = ~np.isnan(cost)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return TensorDataset(as_t(emb), as_t(np.nan_to_num(quality)), as_t(q_mask),
                         as_t(np.nan_to_num(cost) / scale), as_t(c_mask))


def fit_scalarised(config: ScalarisedConfig, ctx: FitContext) -> tuple[ScalarisedRouter, dict]:
    """Train; returns the router with the best validation epoch's weights and fit metrics."""
    train = ctx.require_outcomes("scalarised")
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    router = ScalarisedRouter(config, **ctx.router_kwargs(encoder=True))
    scale = cost_scale(train.cost)
    net = router.network(ctx.train_embeddings.shape[1])
    # start the cost part at each model's mean cost: the reward's λ-slope is right from step one and
    # training only learns how cost varies by prompt (models without any cost start at 1e-6 of a typical prompt)
    with torch.no_grad():
        mean = np.nanmean(np.where(np.isnan(train.cost), np.nan, np.nan_to_num(train.cost)), axis=0) / scale
        net.cost_head.bias.copy_(torch.from_numpy(np.log(np.maximum(np.nan_to_num(mean, nan=0.0), 1e-6)).astype(np.float32)))
        net.cost_head.weight.mul_(0.01)
    has_val = ctx.val is not None and len(ctx.val) > 0
    train_ds = _tensors(ctx.train_embeddings, train.quality, train.cost, scale)
    val_ds = _tensors(ctx.val_embeddings, ctx.val.quality, ctx.val.cost, scale) if has_val else None
    module = RewardModule(net, config, ctx.seed)
    metrics = fit_module(module, train_ds, val_ds, config, ctx, "val_loss")
    router.set_network(module.net, scale)
    metrics["cost_scale"] = scale
    return router, metrics
