"""Contextual bandit router: disjoint LinUCB (or Thompson sampling) on prompt embeddings.

Each candidate model is an arm with a ridge regression of its reward (quality) on the prompt's
embedding plus a bias: ``A_j = ridge·I + Σ x xᵀ`` and ``b_j = ridge·prior·e_bias + Σ r x`` over the
prompts it was tried on, ``θ_j = A_j⁻¹ b_j``. The router contract's prediction is the posterior mean
``q̂_j(x) = xᵀθ_j`` (deterministic, so every policy, the contract suite and the server use it as
they use any router); exploration happens only where a bandit chooses for itself
(:meth:`LinUCBRouter.select`): LinUCB adds ``alpha·sqrt(xᵀA_j⁻¹x)``, Thompson sampling draws each
arm's score from ``N(xᵀθ_j, alpha²·xᵀA_j⁻¹x)`` (the marginal of the posterior at x: one draw per
prompt and arm instead of a D×D Cholesky factor per arm and step).

Training (:func:`fit_linucb`) replays the benchmark table as a bandit would have seen it: prompts in
random order, in small batches; for each, the bandit picks a model and learns only that model's
outcome (``offline="replay"``). ``offline="full"`` instead learns every observed outcome (a
supervised warm start). Online, :meth:`LinUCBRouter.update` adds (prompt, model, reward) triples,
e.g. from the server's ``POST /v1/feedback`` (:mod:`routerzoo.serving.feedback`). ``A`` and ``b``
are the state (safetensors), so a saved bandit resumes exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router, check_prompts

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext

EXPLORATION = ("ucb", "thompson")
OFFLINE = ("replay", "full")


@dataclass
class LinUCBConfig:
    """Contextual bandit hyper-parameters.

    Attributes:
        exploration: "ucb" (LinUCB's upper confidence bound) or "thompson" (Thompson sampling).
        alpha: width of the confidence bound (ucb) or the posterior's scale (thompson).
        ridge: prior precision of each arm's weights (the ridge penalty).
        offline: "replay" (learn, in random order, only the outcome of the model the bandit picks)
            or "full" (learn every observed outcome of the training table).
        replay_cost_weight: λ in quality per USD at which the bandit picks models during the offline
            replay (0: quality alone).
        replay_batch: prompts decided together before their outcomes are learnt (as a server batches
            feedback).
        dims: principal components of the training prompts' embeddings the bandit reads (0: the full
            embedding). A linear arm needs on the order of D rewards before its estimate means much,
            so fewer dimensions learn much faster from bandit feedback (and A is D×D per model).
    """

    exploration: str = "ucb"
    alpha: float = 0.1
    ridge: float = 1.0
    offline: str = "replay"
    replay_cost_weight: float = 0.0
    replay_batch: int = 16
    dims: int = 32

    def __post_init__(self):
        if self.exploration not in EXPLORATION:
            raise ConfigError(f"router.exploration must be one of {list(EXPLORATION)}, got {self.exploration!r}")
        if self.offline not in OFFLINE:
            raise ConfigError(f"router.offline must be one of {list(OFFLINE)}, got {self.offline!r}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"router.alpha must be >= 0, got {self.alpha}")
        if not (math.isfinite(self.ridge) and self.ridge > 0):
            raise ConfigError(f"router.ridge must be > 0, got {self.ridge}")
        if not (math.isfinite(self.replay_cost_weight) and self.replay_cost_weight >= 0):
            raise ConfigError(f"router.replay_cost_weight must be >= 0, got {self.replay_cost_weight}")
        if self.replay_batch < 1:
            raise ConfigError(f"router.replay_batch must be >= 1, got {self.replay_batch}")
        if self.dims < 0:
            raise ConfigError(f"router.dims must be >= 0 (0: the full embedding), got {self.dims}")


def pca(embeddings: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(center (d,), projection (d, k)) onto the top ``k = min(dims, d, n)`` principal components;
    dims = 0 keeps the embedding as it is (zero center, identity)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    d = emb.shape[1]
    if dims == 0 or dims >= d or len(emb) < 2:
        return np.zeros(d), np.eye(d)
    center = emb.mean(axis=0)
    _, _, vt = np.linalg.svd(emb - center, full_matrices=False)
    return center, vt[:min(dims, len(vt))].T.copy()


class LinUCBRouter(Router):
    """Disjoint linear bandit over prompt embeddings (see the module docstring).

    State: ``A`` (m, D, D) and ``b`` (m, D) with D = k + 1, ``counts`` (m,) rewards learnt per model,
    ``center`` (d,) and ``projection`` (d, k) mapping an embedding to the bandit's k features.
    """

    kind = "linucb"
    Config = LinUCBConfig
    uses_embeddings = True

    # -- state -----------------------------------------------------------------------------------
    def init_state(self, dim: int, prior: float, center: np.ndarray | None = None,
                   projection: np.ndarray | None = None) -> LinUCBRouter:
        """An untrained bandit for d-dimensional embeddings: every arm's quality starts at ``prior``.

        Args:
            dim: embedding size d.
            prior: initial predicted quality of every model.
            center, projection: (d,) and (d, k) feature map (see :func:`pca`); None: identity.
        """
        center = np.zeros(dim) if center is None else center
        projection = np.eye(dim) if projection is None else projection
        m, big_d = len(self.models), projection.shape[1] + 1
        a = np.broadcast_to(self.config.ridge * np.eye(big_d), (m, big_d, big_d)).copy()
        b = np.zeros((m, big_d))
        b[:, -1] = self.config.ridge * float(prior)
        return self.set_state(a, b, np.zeros(m), center, projection)

    def set_state(self, a: np.ndarray, b: np.ndarray, counts: np.ndarray, center: np.ndarray,
                  projection: np.ndarray) -> LinUCBRouter:
        self.A_ = np.asarray(a, dtype=np.float64)
        self.b_ = np.asarray(b, dtype=np.float64)
        self.counts_ = np.asarray(counts, dtype=np.float64)
        self.center_ = np.asarray(center, dtype=np.float64)
        self.projection_ = np.asarray(projection, dtype=np.float64)
        self._refresh()
        return self

    def _refresh(self) -> None:
        # θ and A⁻¹ always from (A, b) the same way, so a fitted and a loaded bandit agree to the bit
        self.A_inv_ = np.linalg.inv(self.A_)
        self.theta_ = np.einsum("mij,mj->mi", self.A_inv_, self.b_)

    def fitted_attributes(self) -> list[str]:
        return ["A_", "b_", "counts_", "projection_"]

    def state(self) -> dict[str, np.ndarray]:
        return {"A": self.A_, "b": self.b_, "counts": self.counts_, "center": self.center_,
                "projection": self.projection_}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        m = len(self.models)
        a = self._tensor(tensors, "A", (m, None, None))
        big_d = a.shape[1]
        if a.shape[2] != big_d or big_d < 2:
            raise UserError(f"weights: tensor 'A' has shape {a.shape}, expected ({m}, D, D) with D >= 2")
        b = self._tensor(tensors, "b", (m, big_d))
        counts = self._tensor(tensors, "counts", (m,))
        projection = self._tensor(tensors, "projection", (None, big_d - 1))
        center = self._tensor(tensors, "center", (projection.shape[0],))
        if not all(np.isfinite(t).all() for t in (a, b, projection, center)):
            raise UserError("weights: tensors 'A', 'b', 'center' and 'projection' must be finite")
        self.set_state(a, b, counts, center, projection)

    # -- prediction ------------------------------------------------------------------------------
    def _x(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, d) embeddings → (n, k + 1) features: projected, with a bias column."""
        d = self.projection_.shape[0]
        if embeddings.ndim != 2 or embeddings.shape[1] != d:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {d})")
        z = (np.asarray(embeddings, dtype=np.float64) - self.center_) @ self.projection_
        return np.hstack([z, np.ones((len(z), 1))])

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, None]:
        quality = self._x(embeddings) @ self.theta_.T
        return np.clip(quality, *self.quality_range), None

    def uncertainty_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) posterior standard deviation of each arm's mean reward, sqrt(xᵀA_j⁻¹x)."""
        self._check_fitted()
        x = self._x(np.asarray(embeddings, dtype=np.float32))
        quad = (np.matmul(x[None], self.A_inv_) * x[None]).sum(axis=2)  # (m, n): batched BLAS, not einsum loops
        return np.sqrt(np.maximum(quad.T, 0.0))

    # -- the bandit ------------------------------------------------------------------------------
    def select_embeddings(self, embeddings: np.ndarray, cost_weight: float = 0.0,
                          rng: np.random.Generator | None = None) -> np.ndarray:
        """(n,) arms chosen with exploration: argmax of the UCB / Thompson score − λ·predicted cost.

        Args:
            embeddings: (n, d).
            cost_weight: λ >= 0 in quality per USD.
            rng: random generator for Thompson sampling (default: seeded by the updates so far).
        """
        self._check_fitted()
        emb = np.asarray(embeddings, dtype=np.float32)
        mean = self._x(emb) @ self.theta_.T  # unclipped: exploration needs the raw estimate
        sd = self.uncertainty_embeddings(emb)
        if self.config.exploration == "ucb":
            score = mean + self.config.alpha * sd
        else:
            rng = rng if rng is not None else np.random.default_rng(int(self.counts_.sum()))
            score = mean + self.config.alpha * sd * rng.standard_normal(mean.shape)
        cost = self.cost_model.predict(None, len(emb))
        return np.argmax(score - cost_weight * cost, axis=1)

    def select(self, prompts: Sequence[str], cost_weight: float = 0.0) -> list[str]:
        """Model names chosen with exploration (see :meth:`select_embeddings`)."""
        prompts = check_prompts(prompts)
        return [self.models[j] for j in self.select_embeddings(self.embed(prompts), cost_weight)]

    def update_embeddings(self, embeddings: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> LinUCBRouter:
        """Learn rewards of the models tried.

        Args:
            embeddings: (n, d) prompt embeddings.
            arms: (n,) model indices.
            rewards: (n,) observed rewards (quality).
        """
        self._check_fitted()
        x = self._x(np.asarray(embeddings, dtype=np.float32))
        arms = np.asarray(arms, dtype=np.int64)
        rewards = np.asarray(rewards, dtype=np.float64)
        if arms.shape != (len(x),) or rewards.shape != (len(x),):
            raise UserError(f"update: {len(x)} prompts, {arms.size} models and {rewards.size} rewards; give one of each per prompt")
        if not np.isfinite(rewards).all():
            raise UserError(f"update: reward {int(np.flatnonzero(~np.isfinite(rewards))[0])} is not a finite number")
        if arms.size and (arms.min() < 0 or arms.max() >= len(self.models)):
            raise UserError(f"update: model index out of range 0..{len(self.models) - 1}")
        self._accumulate(x, arms, rewards)
        self._refresh()
        return self

    def _accumulate(self, x: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        """Add rows to (A, b) and keep A⁻¹ and θ current by the Woodbury identity (k rows: O(k·D²)
        per arm instead of a D³ inverse). Public updates then recompute them exactly (:meth:`_refresh`)."""
        for j in np.unique(arms):
            rows = arms == j
            xj = x[rows]
            self.A_[j] += xj.T @ xj
            self.b_[j] += rewards[rows] @ xj
            self.counts_[j] += rows.sum()
            ax = self.A_inv_[j] @ xj.T  # (D, k)
            self.A_inv_[j] -= ax @ np.linalg.solve(np.eye(len(xj)) + xj @ ax, ax.T)
            self.theta_[j] = self.A_inv_[j] @ self.b_[j]

    def update(self, prompts: Sequence[str], models: Sequence[str], rewards: Sequence[float]) -> LinUCBRouter:
        """Learn online from (prompt, model, reward) triples; the next decisions use them.

        Raises:
            UserError: lengths differ, a model is not a candidate (naming it), or a reward is not finite.
        """
        prompts = check_prompts(prompts)
        models = list(models)
        for i, name in enumerate(models):
            if name not in self.models:
                raise UserError(f"update: models[{i}] = {name!r} is not a candidate; candidates: {self.models}")
        arms = np.array([self.models.index(name) for name in models], dtype=np.int64)
        try:
            values = np.asarray(list(rewards), dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError("update: rewards must be numbers") from None
        if not (len(prompts) == len(arms) == len(values)):
            raise UserError(f"update: {len(prompts)} prompts, {len(arms)} models and {len(values)} rewards; give one of each per prompt")
        if not prompts:
            return self
        return self.update_embeddings(self.embed(prompts), arms, values)

    def replay(self, embeddings: np.ndarray, quality: np.ndarray, cost: np.ndarray, cost_weight: float,
               order: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Bandit feedback on a logged table: decide, learn only the chosen model's outcome, go on.

        Prompts are taken in ``order`` in batches of ``replay_batch``; a chosen model without an
        outcome for the prompt teaches nothing (the standard replay rejection).

        Args:
            embeddings: (N, d) prompt embeddings.
            quality, cost: (N, m) logged outcomes (NaN where unknown).
            cost_weight: λ used to choose.
            order: (T,) prompt indices in the order they arrive.
            rng: generator for Thompson sampling.

        Returns:
            ``(arms, learnt)``: (T,) the model chosen for each arriving prompt, and (T,) bool whether
            its outcome was known (and learnt).
        """
        arms = np.zeros(len(order), dtype=np.int64)
        learnt = np.zeros(len(order), dtype=bool)
        step = self.config.replay_batch
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            chosen = self.select_embeddings(embeddings[idx], cost_weight, rng)
            reward = quality[idx, chosen]
            known = ~np.isnan(reward)
            arms[start:start + step], learnt[start:start + step] = chosen, known
            if known.any():
                self._accumulate(self._x(embeddings[idx][known]), chosen[known], reward[known])
        self._refresh()  # exact A⁻¹ and θ from (A, b), as a loaded bandit computes them
        return arms, learnt


def fit_linucb(config: LinUCBConfig, ctx: FitContext) -> tuple[LinUCBRouter, dict]:
    """Offline training: replay of the training table (or every outcome with ``offline="full"``)."""
    train = ctx.require_outcomes("linucb")
    router = LinUCBRouter(config, **ctx.router_kwargs(encoder=True))
    emb = ctx.train_embeddings
    prior = float(np.nanmean(train.quality)) if (~np.isnan(train.quality)).any() else 0.0
    center, projection = pca(emb, config.dims)
    router.init_state(emb.shape[1], prior, center, projection)
    if config.offline == "full":
        rows, cols = np.nonzero(~np.isnan(train.quality))
        router.update_embeddings(emb[rows], cols, train.quality[rows, cols])
        return router, {"learnt": int(rows.size)}
    rng = np.random.default_rng(ctx.seed)
    order = rng.permutation(len(train))
    arms, learnt = router.replay(emb, train.quality, train.cost, config.replay_cost_weight, order, rng)
    rewards = train.quality[order, arms]
    metrics = {"learnt": int(learnt.sum()), "replay_mean_reward": float(np.nanmean(rewards)) if learnt.any() else 0.0}
    metrics.update({f"replay_share_{m}": float((arms == j).mean()) for j, m in enumerate(router.models)})
    return router, metrics
