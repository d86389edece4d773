"""Train the matrix factorisation router (:mod:`routerzoo.routers.kinds.mf`) with a small plain-torch loop.

One epoch is a pass over the training prompts (outcome loss) and/or the training pairs (pair loss);
AdamW; early stopping on the validation loss (the same losses on the validation split), keeping the
best epoch's parameters in memory. Deterministic under the context's seed (CPU).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from routerzoo.data.matrix import PreferenceMatrix
from routerzoo.routers.kinds.mf import MFConfig, MFRouter, fit_log_cost, resolve_source
from routerzoo.training.context import FitContext


class MFNet(nn.Module):
    """s_j(x) = v_j · (W x + c) + b_j."""

    def __init__(self, in_dim: int, n_models: int, dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.model_emb = nn.Parameter(torch.randn(n_models, dim) * (1.0 / dim ** 0.5))
        self.model_bias = nn.Parameter(torch.zeros(n_models))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x)) @ self.model_emb.T + self.model_bias


class _Pairs:
    """Pairs as tensors indexing a table of unique prompt embeddings."""

    def __init__(self, pairs: PreferenceMatrix, emb: np.ndarray, row: np.ndarray):
        self.emb = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        self.row = torch.from_numpy(row.astype(np.int64))
        self.a = torch.from_numpy(pairs.a.astype(np.int64))
        self.b = torch.from_numpy(pairs.b.astype(np.int64))
        self.outcome = torch.from_numpy(pairs.outcome.astype(np.float32))
        self.weight = torch.from_numpy(pairs.weight.astype(np.float32))

    def __len__(self) -> int:
        return len(self.a)


def _pair_set(ctx: FitContext, split: str) -> _Pairs | None:
    pairs = ctx.preference_pairs(split)
    if pairs is None or len(pairs) == 0:
        return None
    outcomes = ctx.train if split == "train" else ctx.val
    own = ctx.train_prefs if split == "train" else ctx.val_prefs
    derived = own is None or len(own) == 0
    if derived:  # pairs derived from the outcome table: its prompts are already encoded
        emb = ctx.train_embeddings if split == "train" else ctx.val_embeddings
        index = {pid: i for i, pid in enumerate(outcomes.prompt_ids)}
        row = np.array([index[pid] for pid in pairs.prompt_ids])
        return _Pairs(pairs, emb, row)
    unique = sorted(set(pairs.prompts))
    index = {p: i for i, p in enumerate(unique)}
    return _Pairs(pairs, ctx.embed(unique), np.array([index[p] for p in pairs.prompts]))


def _outcome_loss(net: MFNet, x: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(net(x), q, reduction="none")
    return (bce * mask).sum() / mask.sum().clamp_min(1.0)


def _pair_loss(net: MFNet, pairs: _Pairs, idx: torch.Tensor) -> torch.Tensor:
    s = net(pairs.emb[pairs.row[idx]])
    rows = torch.arange(len(idx))
    diff = s[rows, pairs.a[idx]] - s[rows, pairs.b[idx]]
    o, w = pairs.outcome[idx], pairs.weight[idx]
    ll = o * F.logsigmoid(diff) + (1 - o) * F.logsigmoid(-diff)
    return -(w * ll).sum() / w.sum().clamp_min(1e-12)


def _as_t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def fit_mf(config: MFConfig, ctx: FitContext) -> tuple[MFRouter, dict]:
    """Fit; returns the router (its config's ``source`` resolved) and fit metrics."""
    has_outcomes = ctx.train is not None and len(ctx.train) > 0
    has_prefs = ctx.train_prefs is not None and len(ctx.train_prefs) > 0
    source = resolve_source(config.source, has_outcomes, has_prefs)
    use_outcomes = source in ("outcomes", "both")
    use_pairs = source in ("preferences", "both")
    torch.manual_seed(ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed)

    train_x = train_q = train_mask = None
    val_x = val_q = val_mask = None
    if use_outcomes:
        train_x, train_q, train_mask = _as_t(ctx.train_embeddings), _as_t(np.nan_to_num(ctx.train.quality)), _as_t(ctx.train.observed)
        if ctx.val is not None and len(ctx.val):
            val_x, val_q, val_mask = _as_t(ctx.val_embeddings), _as_t(np.nan_to_num(ctx.val.quality)), _as_t(ctx.val.observed)
    train_pairs = _pair_set(ctx, "train") if use_pairs else None
    val_pairs = _pair_set(ctx, "val") if use_pairs else None
    if use_pairs and train_pairs is None:
        from routerzoo.errors import UserError

        raise UserError("router 'mf' found no preference pairs in the train split")

    in_dim = (train_x if train_x is not None else train_pairs.emb).shape[1]
    m = len(ctx.models)
    net = MFNet(in_dim, m, config.dim, config.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    pair_w = config.pair_weight if use_outcomes else 1.0

    def val_loss() -> float | None:
        net.eval()
        with torch.no_grad():
            total, any_ = 0.0, False
            if val_x is not None:
                total += float(_outcome_loss(net, val_x, val_q, val_mask))
                any_ = True
            if val_pairs is not None:
                total += pair_w * float(_pair_loss(net, val_pairs, torch.arange(len(val_pairs))))
                any_ = True
        net.train()
        return total if any_ else None

    n_out = len(train_x) if train_x is not None else 0
    n_pairs = len(train_pairs) if train_pairs is not None else 0
    # one epoch = one pass over the larger of the two sets; the other is sampled to as many steps
    steps = max(-(-n_out // config.batch_size), -(-n_pairs // config.batch_size), 1)
    best_loss, best_state, best_epoch, bad = float("inf"), None, -1, 0
    history = []
    epoch = 0
    net.train()
    from routerzoo import progress

    bar = progress.bar(config.max_epochs, "mf", "epoch", ctx.progress)
    for epoch in range(config.max_epochs):
        bar.update(1)
        perm_o = torch.randperm(n_out, generator=gen) if n_out else None
        perm_p = torch.randperm(n_pairs, generator=gen) if n_pairs else None
        for step in range(steps):
            loss = torch.zeros(())
            if n_out:
                idx = perm_o[(torch.arange(config.batch_size) + step * config.batch_size) % n_out]
                loss = loss + _outcome_loss(net, train_x[idx], train_q[idx], train_mask[idx])
            if n_pairs:
                idx = perm_p[(torch.arange(config.batch_size) + step * config.batch_size) % n_pairs]
                loss = loss + pair_w * _pair_loss(net, train_pairs, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        vl = val_loss()
        history.append(vl)
        if vl is not None:
            bar.set_description(f"mf (val loss {vl:.4f})")
        if vl is None:  # no validation data: keep the last epoch
            best_state, best_epoch = {k: v.detach().clone() for k, v in net.state_dict().items()}, epoch
            continue
        if vl < best_loss - 1e-6:
            best_loss, best_epoch, bad = vl, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()

    cost_w = cost_s = None
    if config.predict_cost and has_outcomes and ctx.train.cost is not None and np.isfinite(ctx.train.cost).any():
        cost_w, cost_s = fit_log_cost(ctx.train_embeddings, ctx.train.cost, config.cost_ridge)
    router = MFRouter(replace(config, source=source), **ctx.router_kwargs(encoder=True))
    router.set_params(net.proj.weight.detach().numpy(), net.proj.bias.detach().numpy(), net.model_emb.detach().numpy(),
                      net.model_bias.detach().numpy(), centre=not use_outcomes, cost_weight=cost_w, cost_smear=cost_s)
    metrics = {"source": source, "best_epoch": best_epoch, "epochs": epoch + 1}
    if best_loss < float("inf"):
        metrics["val_loss"] = best_loss
    return router, metrics
