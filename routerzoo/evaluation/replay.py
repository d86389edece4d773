"""Offline replay evaluation of a bandit router: only the chosen model's outcome is revealed.

The logged table is replayed in random order; at each step the bandit picks a model for the
arriving prompt (with its exploration), learns that model's reward and nothing else, and moves on.
Regret at step t is the reward given up against

* the **oracle**: the best model for that very prompt (``max_j r_tj − r_t,chosen``);
* the **best fixed model**: the single model with the highest mean reward over the whole sequence,
  chosen in hindsight (``r_t,best − r_t,chosen``; this one can go negative when routing beats any
  single model).

Rewards are ``quality − λ·cost`` at the given cost weight. Only prompts with every model's outcome
take part, so every choice is revealed (no replay rejection) and both baselines are defined.
"""

from __future__ import annotations

import copy

import numpy as np


def replay_regret(bandit, embeddings: np.ndarray, quality: np.ndarray, cost: np.ndarray,
                  cost_weight: float = 0.0, seed: int = 0, learn: bool = True) -> dict:
    """Run a replay and return cumulative regret curves.

    Args:
        bandit: a :class:`~routerzoo.routers.kinds.linucb.LinUCBRouter` (copied: the original is untouched).
        embeddings: (N, d) prompt embeddings.
        quality, cost: (N, m) logged outcomes; prompts with any NaN are left out.
        cost_weight: λ >= 0 (quality per USD) of the reward and of the bandit's choices.
        seed: order of arrival and Thompson draws.
        learn: False replays with the bandit frozen (what the offline-trained state alone earns).

    Returns:
        dict with ``steps``; ``reward`` (mean reward earned); ``regret_oracle`` and
        ``regret_best_fixed`` (cumulative totals); ``curve_oracle`` and ``curve_best_fixed``
        ((T,) cumulative regret); ``best_fixed`` (model name); ``shares`` (model → share chosen).
    """
    complete = ~(np.isnan(quality).any(axis=1) | np.isnan(cost).any(axis=1))
    emb, q, c = embeddings[complete], quality[complete], cost[complete]
    reward = q - cost_weight * c
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(q))
    bandit = copy.deepcopy(bandit)
    if learn:
        arms, _ = bandit.replay(emb, q, c, cost_weight, order, rng)
    else:
        arms = bandit.select_embeddings(emb[order], cost_weight, rng)
    got = reward[order, arms]
    best = int(np.argmax(reward.mean(axis=0)))
    curve_oracle = np.cumsum(reward[order].max(axis=1) - got)
    curve_fixed = np.cumsum(reward[order, best] - got)
    return {
        "steps": int(len(order)),
        "reward": float(got.mean()) if len(got) else 0.0,
        "regret_oracle": float(curve_oracle[-1]) if len(got) else 0.0,
        "regret_best_fixed": float(curve_fixed[-1]) if len(got) else 0.0,
        "curve_oracle": curve_oracle,
        "curve_best_fixed": curve_fixed,
        "best_fixed": bandit.models[best],
        "shares": {m: float((arms == j).mean()) for j, m in enumerate(bandit.models)} if len(got) else {},
    }
