"""Matrix factorisation router: RouteLLM's MF generalised to N candidate models.

Each candidate j has a learned embedding v_j (``dim``) and a bias b_j; a prompt's sentence embedding
x is projected to the same space, and the model's score is

    s_j(x) = v_j · (W x + c) + b_j

(RouteLLM scores ``w · (v_j ⊙ W x)``, the same bilinear family). Two losses train the same scores:

* benchmark outcomes: per-model binary cross-entropy of sigmoid(s_j(x)) against the observed quality
  (soft targets in [0, 1], masked where a model has no outcome);
* preference pairs: Bradley-Terry, P(a preferred to b | x) = sigmoid(s_a(x) − s_b(x)), ties as
  half a win for each side.

``source="auto"`` uses what the dataset has (both when it has both). The router's predicted quality
is sigmoid(s_j(x)); trained from pairs alone the scores' offset is not identified, so it is
sigmoid(s_j(x) − mean_k s_k(x)), P(beating an average model on this prompt), as the Elo router's.
Either way ``Router.win_probability`` gives back the Bradley-Terry probability the pairs were fitted
to. Costs: a ridge regression of each model's log cost on the embedding (``predict_cost``), else
each model's mean training cost.

Inference is numpy only; training (a small plain-torch loop with early stopping on the validation
loss, deterministic under the seed) lives in :mod:`routerzoo.training.mf`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router
from routerzoo.routers.core.fit_config import FitLoopConfig

SOURCES = ("auto", "outcomes", "preferences", "both")


@dataclass
class ProjectionFields:
    """The fields of a prompt projection with a cost regression (:class:`ProjectionRouter`), mixed
    into a config beside its fit fields (``class C(ProjectionFields, FitLoopConfig)``).

    Attributes:
        dim: size of the model embeddings and of the prompt projection.
        dropout: dropout on the prompt embedding during training.
        predict_cost: learn each model's per-prompt log cost (ridge regression on the embedding);
            else every prompt gets the model's mean training cost.
        cost_ridge: L2 penalty of the cost regression.
    """

    dim: int = 16
    dropout: float = 0.1
    predict_cost: bool = True
    cost_ridge: float = 1.0

    def __post_init__(self):
        super().__post_init__()  # the fit fields' checks
        if self.dim < 1:
            raise ConfigError(f"router.dim must be >= 1, got {self.dim}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"router.dropout must be in [0, 1), got {self.dropout}")
        if self.cost_ridge < 0:
            raise ConfigError(f"router.cost_ridge must be >= 0, got {self.cost_ridge}")


@dataclass
class MFConfig(ProjectionFields, FitLoopConfig):
    """Matrix factorisation router hyper-parameters (and the fields of :class:`ProjectionFields` and
    :class:`FitLoopConfig`).

    Attributes:
        source: training signal: "auto" (whatever the dataset has: outcomes, preference pairs, or
            both), "outcomes" (per-model BCE), "preferences" (Bradley-Terry on pairs; pairs are
            derived from outcomes when the dataset has none) or "both". The artifact stores the
            source actually used.
        pair_weight: weight of the pair loss against the outcome loss when both are used.
        batch_size: prompts (outcomes) or pairs (preferences) per step.
    """

    source: str = "auto"
    pair_weight: float = 1.0
    weight_decay: float = 1e-4
    batch_size: int = 256
    patience: int = 5

    def __post_init__(self):
        super().__post_init__()
        if self.source not in SOURCES:
            raise ConfigError(f"router.source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.pair_weight < 0:
            raise ConfigError(f"router.pair_weight must be >= 0, got {self.pair_weight}")


def fit_log_cost(emb: np.ndarray, cost: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-model ridge regression of log cost on [embedding, 1].

    Args:
        emb: (N, d) embeddings.
        cost: (N, m) observed USD, NaN (or <= 0) where unknown.
        ridge: L2 penalty (the intercept is not penalised).

    Returns:
        weights (d + 1, m) and a per-model smearing factor (m,) that makes the mean predicted cost
        on the training prompts equal the mean observed cost (exp of a mean log underestimates the
        mean). A model without positive costs gets zero weights and factor 0 (the caller falls
        back to the mean cost).
    """
    n, d = emb.shape
    m = cost.shape[1]
    X = np.hstack([emb.astype(np.float64), np.ones((n, 1))])
    W = np.zeros((d + 1, m))
    smear = np.zeros(m)
    penalty = ridge * np.eye(d + 1)
    penalty[d, d] = 0.0
    for j in range(m):
        ok = np.isfinite(cost[:, j]) & (np.nan_to_num(cost[:, j]) > 0)
        if ok.sum() < 2:
            continue
        Xj, y = X[ok], np.log(cost[ok, j])
        W[:, j] = np.linalg.solve(Xj.T @ Xj + penalty + 1e-9 * np.eye(d + 1), Xj.T @ y)
        smear[j] = float(np.mean(cost[ok, j]) / np.mean(np.exp(Xj @ W[:, j])))
    return W.astype(np.float32), smear.astype(np.float32)


def predict_log_cost(emb: np.ndarray, W: np.ndarray, smear: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(n, m) predicted USD from :func:`fit_log_cost`'s weights; ``fallback`` (m,) where a model has none."""
    X = np.hstack([emb.astype(np.float64), np.ones((emb.shape[0], 1))])
    pred = np.exp(np.clip(X @ W.astype(np.float64), -50, 50)) * smear.astype(np.float64)
    return np.where(smear[None, :] > 0, pred, fallback[None, :])


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class ProjectionRouter(Router):
    """A learned projection of the prompt embedding scored against learned model embeddings, with
    an optional per-model ridge regression of log cost (the ``mf`` and ``routerdc`` routers).

    State: ``proj_weight`` (dim, d), ``proj_bias`` (dim,), ``model_emb`` (m, dim), the kind's own
    score tensors (:meth:`_head_state`), and with ``predict_cost`` the cost regression
    ``cost_weight`` (d + 1, m) and ``cost_smear`` (m,). A subclass's ``set_params`` takes the
    projection, then its own tensors (as :meth:`_load_head` returns them), then the cost regression.
    """

    uses_embeddings = True

    def _set_projection(self, proj_weight, proj_bias, model_emb, cost_weight, cost_smear) -> None:
        self.proj_weight_, self.proj_bias_, self.model_emb_ = _f32(proj_weight), _f32(proj_bias), _f32(model_emb)
        self.cost_weight_ = None if cost_weight is None else _f32(cost_weight)
        self.cost_smear_ = None if cost_smear is None else _f32(cost_smear)

    def fitted_attributes(self) -> list[str]:
        return ["proj_weight_", "model_emb_"]

    def _head_state(self) -> dict[str, np.ndarray]:
        """The kind's own tensors, saved between the projection and the cost regression."""
        raise NotImplementedError

    def _load_head(self, tensors: dict[str, np.ndarray]) -> tuple:
        """The kind's own ``set_params`` arguments from saved tensors, shapes checked."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        out = {"proj_weight": self.proj_weight_, "proj_bias": self.proj_bias_, "model_emb": self.model_emb_,
               **self._head_state()}
        if self.cost_weight_ is not None:
            out["cost_weight"], out["cost_smear"] = self.cost_weight_, self.cost_smear_
        return out

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        m, dim = len(self.models), self.config.dim
        pw = self._tensor(tensors, "proj_weight", (dim, None))
        d = pw.shape[1]
        cost_w = cost_s = None
        if self.config.predict_cost and "cost_weight" in tensors:
            cost_w, cost_s = self._tensor(tensors, "cost_weight", (d + 1, m)), self._tensor(tensors, "cost_smear", (m,))
        self.set_params(pw, self._tensor(tensors, "proj_bias", (dim,)), self._tensor(tensors, "model_emb", (m, dim)),
                        *self._load_head(tensors), cost_w, cost_s)

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, dim) projected prompts W x + c (float64) from (n, d) embeddings."""
        d = self.proj_weight_.shape[1]
        if embeddings.ndim != 2 or embeddings.shape[1] != d:
            raise ValueError(f"embeddings of shape {embeddings.shape}; this router needs (n, {d})")
        return embeddings.astype(np.float64) @ self.proj_weight_.T.astype(np.float64) + self.proj_bias_.astype(np.float64)

    def _with_cost(self, embeddings: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``quality`` and the regressed cost (None without one: the cost model's mean cost is used)."""
        if self.cost_weight_ is None:
            return quality, None
        fallback = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        return quality, predict_log_cost(embeddings, self.cost_weight_, self.cost_smear_, fallback)


class MFRouter(ProjectionRouter):
    """Bilinear scores of prompt and model embeddings.

    State: :class:`ProjectionRouter`'s, with ``model_bias`` (m,) and ``centre`` (1,) (1 when
    trained from pairs alone).
    """

    kind = "mf"
    Config = MFConfig

    def set_params(self, proj_weight, proj_bias, model_emb, model_bias, centre: bool,
                   cost_weight: np.ndarray | None = None, cost_smear: np.ndarray | None = None) -> MFRouter:
        self._set_projection(proj_weight, proj_bias, model_emb, cost_weight, cost_smear)
        self.model_bias_ = _f32(model_bias)
        self.centre_ = _f32([1.0 if centre else 0.0])
        return self

    def _head_state(self) -> dict[str, np.ndarray]:
        return {"model_bias": self.model_bias_, "centre": self.centre_}

    def _load_head(self, tensors: dict[str, np.ndarray]) -> tuple:
        return (self._tensor(tensors, "model_bias", (len(self.models),)),
                bool(self._tensor(tensors, "centre", (1,))[0] > 0.5))

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, m) scores s_j(x) (float64)."""
        s = self.project(embeddings) @ self.model_emb_.T.astype(np.float64) + self.model_bias_.astype(np.float64)
        if self.centre_[0] > 0.5:
            s = s - s.mean(axis=1, keepdims=True)
        return s

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self._with_cost(embeddings, 1.0 / (1.0 + np.exp(-self.logits(embeddings))))


def resolve_source(source: str, has_outcomes: bool, has_prefs: bool) -> str:
    """The training signal actually used, or a UserError saying what the dataset lacks."""
    if source == "auto":
        if has_outcomes and has_prefs:
            return "both"
        if has_outcomes:
            return "outcomes"
        if has_prefs:
            return "preferences"
        raise UserError("router 'mf' needs benchmark outcomes or preference pairs in the train split; this dataset has none")
    if source in ("outcomes", "both") and not has_outcomes:
        raise UserError(f"router 'mf' with source={source!r} trains on benchmark outcomes, and this dataset has none "
                        "in its train split (use source 'preferences' or 'auto')")
    if source == "preferences" and not (has_prefs or has_outcomes):
        raise UserError("router 'mf' with source='preferences' needs preference pairs (or outcomes to derive them from)")
    return source
