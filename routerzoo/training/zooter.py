"""Train the reward-distillation router (:mod:`routerzoo.routers.kinds.zooter`) with Lightning.

Loss: KL(target ‖ softmax(logits)) per prompt, the softmax taken over the models observed for that
prompt (an unobserved model is neither rewarded nor penalised), plus ``mean_loss_weight`` times the
squared error of the mean-quality head against the prompt's mean observed quality. Early stopping
watches the validation KL.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from routerzoo.routers.kinds.zooter import ZooterConfig, ZooterRouter, fit_quality_scale, reward_targets
from routerzoo.training.context import FitContext
from routerzoo.training.lightning_utils import TwoLossModule
from routerzoo.training.loop import fit_module


class DistilModule(TwoLossModule):
    """LightningModule around :func:`routerzoo.routers.kinds.zooter.build_network`."""

    loss_names = ("kl", "mean_mse")
    aux_weight = "mean_loss_weight"

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, target, mask, mean_q = batch
        logits, mean_pred = self.net(x)
        logp = torch.log_softmax(logits.masked_fill(mask == 0, -1e9), dim=1)
        has = mask.sum(dim=1) > 0
        kl = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-12)) - logp), torch.zeros_like(target)).sum(1)
        kl = (kl * has).sum() / has.sum().clamp_min(1)
        mse = (((mean_pred - mean_q) ** 2) * has).sum() / has.sum().clamp_min(1)
        return kl, mse


def _tensors(emb: np.ndarray, quality: np.ndarray, categories, config: ZooterConfig) -> TensorDataset:
    observed = ~np.isnan(quality)
    target = reward_targets(quality, config.temperature, categories if config.tag_enhancement else None,
                            config.tag_weight)
    mean_q = np.nan_to_num(np.nanmean(np.where(observed, quality, np.nan), axis=1)) if observed.any() else np.zeros(len(quality))
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return TensorDataset(as_t(emb), as_t(target), as_t(observed), as_t(mean_q))


def fit_zooter(config: ZooterConfig, ctx: FitContext) -> tuple[ZooterRouter, dict]:
    """Train; returns the router with the best validation epoch's weights and fit metrics."""
    train = ctx.require_outcomes("zooter")
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    router = ZooterRouter(config, **ctx.router_kwargs(encoder=True))
    net = router.network(ctx.train_embeddings.shape[1])
    has_val = ctx.val is not None and len(ctx.val) > 0
    train_ds = _tensors(ctx.train_embeddings, train.quality, train.categories, config)
    # validation targets without label enhancement: early stopping judges the prompt's own rewards
    val_ds = _tensors(ctx.val_embeddings, ctx.val.quality, None, config) if has_val else None
    module = DistilModule(net, config)
    metrics = fit_module(module, train_ds, val_ds, config, ctx, "val_kl")
    # the factor putting log-probabilities back on the quality scale, on data the network was not fitted to
    emb, outcomes = (ctx.val_embeddings, ctx.val) if has_val else (ctx.train_embeddings, train)
    router.set_network(module.net, config.temperature)
    centred, _ = router.centred_log_probs(emb)
    router.set_network(module.net, fit_quality_scale(centred, outcomes.quality, config.temperature))
    metrics["quality_scale"] = router.quality_scale_
    if config.tag_enhancement:
        metrics["tagged_prompts"] = int(sum(c is not None and c == c and c != "" for c in train.categories))
    return router, metrics
