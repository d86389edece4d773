"""Train the dual-contrastive router (:mod:`routerzoo.routers.kinds.routerdc`) with Lightning.

Per batch: the sample-LLM contrastive loss (each prompt's top-k models against its bottom-k, by
observed quality, masked where outcomes are missing) plus ``sample_weight`` × the sample-sample
contrastive loss (prompts of the same k-means cluster attract, others repel, within the batch).
Early stopping on the validation sample-LLM loss, best epoch kept in memory. Then each model's
score is calibrated to a success probability (Platt scaling on the training outcomes) and the cost
regression is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from routerzoo.errors import UserError
from routerzoo.routers.kinds.cluster import spherical_kmeans
from routerzoo.routers.kinds.mf import fit_log_cost
from routerzoo.routers.kinds.routerdc import RouterDCConfig, RouterDCRouter
from routerzoo.training.context import FitContext
from routerzoo.training.lightning_utils import early_stopped_trainer, run_fit, seeded_loader, trainer_kwargs


class DCNet(nn.Module):
    """z(x) = normalise(W x + c); s_j = z · normalise(k_j) / temperature."""

    def __init__(self, in_dim: int, n_models: int, dim: int, dropout: float, temperature: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.model_emb = nn.Parameter(torch.randn(n_models, dim) * (1.0 / dim ** 0.5))
        self.dropout = nn.Dropout(dropout)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, d) → scores (B, m), projected prompts (B, dim) of unit norm."""
        z = F.normalize(self.proj(self.dropout(x)), dim=-1)
        return z @ F.normalize(self.model_emb, dim=-1).T / self.temperature, z


def contrast_masks(quality: np.ndarray, top_k: int, last_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative models per prompt.

    Args:
        quality: (N, m) observed quality, NaN where unknown.

    Returns:
        (pos (N, m), neg (N, m)) booleans. Positives: observed models at or above the k-th best
        observed quality and above the worst; negatives: at or below the k-th worst and below the
        best, never a positive. With binary outcomes that is "right" vs "wrong" once k reaches the
        ties; a prompt whose observed outcomes all tie has neither.
    """
    observed = ~np.isnan(quality)
    n_obs = observed.sum(axis=1)
    hi = np.sort(np.where(observed, quality, -np.inf), axis=1)[:, ::-1]
    lo = np.sort(np.where(observed, quality, np.inf), axis=1)
    rows = np.arange(len(quality))
    top_cut = hi[rows, np.clip(np.minimum(top_k, n_obs) - 1, 0, None)][:, None]
    low_cut = lo[rows, np.clip(np.minimum(last_k, n_obs) - 1, 0, None)][:, None]
    best, worst = hi[:, :1], lo[:, :1]
    q_hi, q_lo = np.where(observed, quality, -np.inf), np.where(observed, quality, np.inf)
    pos = observed & (q_hi >= top_cut) & (q_hi > worst)
    neg = observed & (q_lo <= low_cut) & (q_lo < best) & ~pos
    usable = (pos.any(axis=1) & neg.any(axis=1))[:, None]
    return pos & usable, neg & usable


def sample_llm_loss(scores: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean over (prompt, positive model) of −log(e^{s+} / (e^{s+} + Σ_neg e^{s−}))."""
    neg_lse = torch.logsumexp(scores.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)  # (B, 1)
    per = -(scores - torch.logaddexp(scores, neg_lse))  # (B, m); only positives count
    per = torch.where(pos & neg.any(dim=1, keepdim=True), per, torch.zeros_like(per))
    return per.sum() / pos.sum().clamp_min(1)


def sample_sample_loss(z: torch.Tensor, cluster: torch.Tensor, temperature: float) -> torch.Tensor:
    """In-batch contrastive loss: for each anchor and each same-cluster partner,
    −log(e^{z·z+/τ} / (e^{z·z+/τ} + Σ_other-cluster e^{z·z−/τ}))."""
    sim = z @ z.T / temperature  # (B, B)
    same = cluster[:, None] == cluster[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos, neg = same & ~eye, ~same
    neg_lse = torch.logsumexp(sim.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)
    per = -(sim - torch.logaddexp(sim, neg_lse))
    ok = pos & neg.any(dim=1, keepdim=True)
    return torch.where(ok, per, torch.zeros_like(per)).sum() / ok.sum().clamp_min(1)


class DCModule(L.LightningModule):
    """LightningModule around :class:`DCNet` with RouterDC's two losses."""

    def __init__(self, net: DCNet, config: RouterDCConfig):
        super().__init__()
        self.net = net
        self.config = config

    def training_step(self, batch, batch_idx):
        x, pos, neg, cluster = batch
        scores, z = self.net(x)
        llm = sample_llm_loss(scores, pos.bool(), neg.bool())
        ss = sample_sample_loss(z, cluster, self.config.sample_temperature) if self.config.sample_weight > 0 else torch.zeros(())
        self.log_dict({"train_sample_llm": llm, "train_sample_sample": ss}, on_step=False, on_epoch=True,
                      batch_size=len(x), sync_dist=True)
        return llm + self.config.sample_weight * ss

    def validation_step(self, batch, batch_idx):
        x, pos, neg = batch
        scores, _ = self.net(x)
        self.log("val_loss", sample_llm_loss(scores, pos.bool(), neg.bool()), on_step=False, on_epoch=True,
                 prog_bar=True, batch_size=len(x), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)


@dataclass
class _Platt:
    slope: np.ndarray
    intercept: np.ndarray


def fit_platt(scores: np.ndarray, quality: np.ndarray, l2: float = 1e-3, iters: int = 50) -> _Platt:
    """Per-model logistic fit q ≈ sigmoid(a·s + b) (soft targets, masked where NaN), a ≥ 0.

    Args:
        scores: (N, m) router scores.
        quality: (N, m) observed quality in [0, 1], NaN where unknown.
    """
    m = scores.shape[1]
    a, b = np.ones(m), np.zeros(m)
    for j in range(m):
        ok = ~np.isnan(quality[:, j])
        if ok.sum() < 2:
            continue
        x, y = scores[ok, j].astype(np.float64), quality[ok, j].astype(np.float64)
        X = np.stack([x, np.ones_like(x)], axis=1)
        w = np.zeros(2)
        for _ in range(iters):  # Newton on the mean log-loss with a small ridge
            p = 1.0 / (1.0 + np.exp(-(X @ w)))
            grad = X.T @ (p - y) / len(y) + l2 * np.array([w[0], 0.0])
            hess = (X * (p * (1 - p))[:, None]).T @ X / len(y) + l2 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        if w[0] > 0:
            a[j], b[j] = w
        else:  # scores that anti-correlate with success: trust the model's base rate, not the ordering
            rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
            a[j], b[j] = 0.0, np.log(rate / (1 - rate))
    return _Platt(a, b)


def _as_t(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def fit_routerdc(config: RouterDCConfig, ctx: FitContext) -> tuple[RouterDCRouter, dict]:
    """Train on the training outcomes; returns the router and fit metrics."""
    train = ctx.require_outcomes("routerdc")
    tk = trainer_kwargs(config, ctx)
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    pos, neg = contrast_masks(train.quality, config.top_k, config.last_k)
    if not pos.any():
        raise UserError("router 'routerdc': no training prompt has models of different quality to contrast "
                        "(every prompt's observed outcomes tie)")
    emb = ctx.train_embeddings
    _, labels = spherical_kmeans(emb, config.n_clusters, np.random.default_rng(ctx.seed))
    train_ds = TensorDataset(_as_t(emb), _as_t(pos), _as_t(neg), _as_t(labels, torch.int64))
    has_val = ctx.val is not None and len(ctx.val) > 0
    val_ds = None
    if has_val:
        vpos, vneg = contrast_masks(ctx.val.quality, config.top_k, config.last_k)
        has_val = bool(vpos.any())
        val_ds = TensorDataset(_as_t(ctx.val_embeddings), _as_t(vpos), _as_t(vneg)) if has_val else None
    net = DCNet(emb.shape[1], len(ctx.models), config.dim, config.dropout, config.temperature)
    trainer, keep = early_stopped_trainer(config, ctx, tk, "val_loss", has_val)
    train_dl = seeded_loader(train_ds, config.batch_size, ctx.seed)
    val_dl = DataLoader(val_ds, batch_size=1024) if has_val else None
    run_fit(trainer, DCModule(net, config), train_dl, val_dl)
    if keep.best_state is not None:
        net.load_state_dict(keep.best_state)
    net = net.cpu().eval()

    router = RouterDCRouter(config, **ctx.router_kwargs(encoder=True))
    cost_w = cost_s = None
    if config.predict_cost and train.cost is not None and np.isfinite(train.cost).any():
        cost_w, cost_s = fit_log_cost(emb, train.cost, config.cost_ridge)
    params = [t.detach().numpy() for t in (net.proj.weight, net.proj.bias, net.model_emb)]
    router.set_params(*params, np.ones((2, len(ctx.models))), cost_w, cost_s)  # uncalibrated, to score
    platt = fit_platt(router.similarity_scores(emb), train.quality)
    router.set_params(*params, np.stack([platt.slope, platt.intercept]), cost_w, cost_s)
    metrics = {"best_epoch": keep.best_epoch, "epochs": trainer.current_epoch,
               "contrast_prompts": int(pos.any(axis=1).sum()), "world_size": int(trainer.world_size)}
    if has_val:
        metrics["val_loss"] = keep.best_score
    return router, metrics
