"""Stacking router: a convex combination of other registered routers' predictions.

Each member router (``members``: registered kinds that read prompt embeddings) is trained on the
training split with its own fit function; the weights are then fitted on the validation split:
the point of the simplex grid (``step``) with the best validation AIQ (or, on a dataset of
preference pairs only, the best validation pair log-loss). Quality and cost are the weighted means of
the members' predictions.

The artifact is one router: its config stores each member's resolved config (``member_configs``,
e.g. the k that kNN chose), and its ``weights.safetensors`` holds the members' tensors under
prefixed names (``m0.knn.embeddings``, ...) plus ``stack_weights`` (K,): no pickle, and every member's
tensors are checked by the member's own ``load_state``. Members share the stack's models, cost
model and encoder (a prompt is encoded once).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.base import Router

if TYPE_CHECKING:
    from routerzoo.routers.core.fit_context import FitContext

_NOT_MEMBERS = ("stack", "oracle", "random")


@dataclass
class StackConfig:
    """Stacking router.

    Attributes:
        members: registered router kinds to combine (each must read prompt embeddings). Members that
            cannot train on a dataset (e.g. kNN on preference pairs) are left out when
            ``skip_failing``; the artifact stores the members actually used.
        member_configs: per member kind, its config (fields not given take the kind's defaults);
            the artifact stores each member's full resolved config.
        configs: per member, in ``members`` order, its config; when given it replaces
            ``member_configs`` and a kind may be a member more than once with different settings
            (``--router auto``'s ensembles hold kNNs of several k).
        step: grid step of the weight search on the simplex (1/step must be an integer).
        skip_failing: leave out members that cannot train on the dataset instead of failing.
    """

    members: list[str] = field(default_factory=lambda: ["knn", "mf", "cluster"])
    member_configs: dict[str, dict] = field(default_factory=dict)
    configs: list[dict] = field(default_factory=list)
    step: float = 0.1
    skip_failing: bool = True

    def __post_init__(self):
        if not self.members:
            raise ConfigError("router.members must name at least one router kind")
        if self.configs and len(self.configs) != len(self.members):
            raise ConfigError(f"router.configs has {len(self.configs)} entries for {len(self.members)} members")
        if self.configs and self.member_configs:
            raise ConfigError("give router.configs (one per member) or router.member_configs (one per kind), not both")
        if not self.configs and len(set(self.members)) != len(self.members):
            raise ConfigError(f"router.members names a kind twice: {self.members} (give router.configs, one per member, "
                              "to use a kind twice with different settings)")
        bad = [k for k in self.members if k in _NOT_MEMBERS]
        if bad:
            raise ConfigError(f"router.members cannot include {bad} (stack, oracle and random are not combinable)")
        unknown = sorted(set(self.member_configs) - set(self.members))
        if unknown:
            raise ConfigError(f"router.member_configs names kind(s) {unknown} that are not in router.members")
        if not 0 < self.step <= 1 or abs(round(1 / self.step) - 1 / self.step) > 1e-9:
            raise ConfigError(f"router.step must be in (0, 1] with 1/step an integer, got {self.step}")

    def member_config(self, i: int) -> dict:
        """The config values given for member ``i``."""
        return self.configs[i] if self.configs else self.member_configs.get(self.members[i], {})


def simplex_grid(k: int, step: float) -> np.ndarray:
    """All weight vectors of length k on the simplex with entries multiples of ``step``."""
    n = int(round(1 / step))
    rows = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]
    return np.array(rows, dtype=np.float64) / n


class StackRouter(Router):
    """Weighted mean of member routers' quality and cost predictions.

    State: each member's tensors prefixed ``m{i}.{kind}.`` and ``stack_weights`` (K,).
    """

    kind = "stack"
    Config = StackConfig
    uses_embeddings = True

    def set_members(self, members: list[Router], weights: np.ndarray) -> StackRouter:
        self.members_ = list(members)
        self.stack_weights_ = np.ascontiguousarray(weights, dtype=np.float64)
        return self

    def fitted_attributes(self) -> list[str]:
        return ["members_", "stack_weights_"]

    def state(self) -> dict[str, np.ndarray]:
        out = {"stack_weights": self.stack_weights_}
        for i, member in enumerate(self.members_):
            out.update({f"m{i}.{member.kind}.{k}": v for k, v in member.state().items()})
        return out

    def member(self, kind: str, config) -> Router:
        """An unfitted member router of ``kind`` sharing this router's models, costs and encoder."""
        from routerzoo.routers.registry import get_kind

        cls = get_kind(kind, role="router").load_class()
        return cls(config, models=self.models, cost_model=self.cost_model, encoder=self.encoder,
                   quality_range=self.quality_range, lineage=self.lineage)

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        from routerzoo.routers.core.typed_config import config_from_dict
        from routerzoo.routers.registry import get_kind

        kinds = self.config.members
        weights = self._tensor(tensors, "stack_weights", (len(kinds),))
        members = []
        for i, kind in enumerate(kinds):
            spec = get_kind(kind, role="router")
            where = f"config.configs[{i}]" if self.config.configs else f"config.member_configs[{kind!r}]"
            config = config_from_dict(spec.load_config(), self.config.member_config(i), where)
            member = self.member(kind, config)
            prefix = f"m{i}.{kind}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not own:
                raise UserError(f"weights lack tensors {prefix}* of stack member {i} ({kind!r})")
            member.load_state(own)
            members.append(member)
        known = {"stack_weights"} | {k for k in tensors if any(k.startswith(f"m{i}.{kind}.") for i, kind in enumerate(kinds))}
        extra = sorted(set(tensors) - known)
        if extra:
            raise UserError(f"weights: unexpected tensor(s) {extra[:3]} for a stack of {kinds}")
        self.set_members(members, weights)

    def member_predictions(self, embeddings: np.ndarray, prompts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each member's quality and cost at training prices, shapes (K, n, m); ``prompts`` for members
        that read more than the embedding (an MLP with prompt features)."""
        n, m = embeddings.shape[0], len(self.models)
        fallback = np.nan_to_num(self.cost_model.mean_cost, nan=0.0)
        qs, cs = [], []
        for member in self.members_:
            q, c = member._predict_embeddings(embeddings) if prompts is None else member._predict_inputs(prompts, embeddings)
            qs.append(np.asarray(q, dtype=np.float64).reshape(n, m))
            cs.append(np.broadcast_to(fallback, (n, m)) if c is None else np.asarray(c, dtype=np.float64).reshape(n, m))
        return np.stack(qs), np.stack(cs)

    def _predict_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._predict_inputs(None, embeddings)

    def _predict_inputs(self, prompts: list[str] | None, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, c = self.member_predictions(embeddings, prompts)
        w = self.stack_weights_
        return np.tensordot(w, q, axes=1), np.tensordot(w, c, axes=1)


def _val_objective(ctx: FitContext, router: StackRouter):
    """A function weights → loss on the validation split, or None when there is nothing to score."""
    val = ctx.val
    if val is not None and len(val) and val.observed.all(axis=1).sum() >= 2:
        from routerzoo.evaluation.report import evaluate_predictions

        complete = val.observed.all(axis=1)
        q, c = router.member_predictions(ctx.val_embeddings[complete], [p for p, ok in zip(val.prompts, complete, strict=True) if ok])
        tq, tc = val.quality[complete], val.cost[complete]
        tc = np.nan_to_num(tc, nan=0.0)
        return lambda w: -evaluate_predictions(np.tensordot(w, q, axes=1), np.tensordot(w, c, axes=1), tq, tc,
                                               router.models)["aiq"]["router"]
    pairs = ctx.val_prefs
    if pairs is not None and len(pairs):
        from routerzoo.routers.core.prediction import Prediction
        from routerzoo.routers.kinds.elo import pair_metrics

        unique = sorted(set(pairs.prompts))
        row = {p: i for i, p in enumerate(unique)}
        idx = np.array([row[p] for p in pairs.prompts])
        q, c = router.member_predictions(ctx.embed(unique), unique)
        def loss(w):
            pred = Prediction(np.tensordot(w, q, axes=1)[idx], np.tensordot(w, c, axes=1)[idx])
            return pair_metrics(router.win_probability(pred, pairs.a, pairs.b), pairs.outcome, pairs.weight)["log_loss"]
        return loss
    return None


def fit_stack(config: StackConfig, ctx: FitContext) -> tuple[StackRouter, dict]:
    """Fit every member on the training split, then the weights on the validation split."""
    from routerzoo.routers.core.typed_config import config_from_dict
    from routerzoo.routers.registry import get_kind

    metrics: dict = {}
    fitted: list[Router] = []
    for i, kind in enumerate(config.members):
        spec = get_kind(kind, role="router")
        cls = spec.load_class()
        if not cls.uses_embeddings:
            raise ConfigError(f"router.members: {kind!r} does not read prompt embeddings; a stack combines embedding routers only")
        where = f"router.configs[{i}]" if config.configs else f"router.member_configs[{kind!r}]"
        member_config = config_from_dict(spec.load_config(), config.member_config(i), where)
        try:
            member, member_metrics = spec.load_fit()(member_config, ctx)
        except UserError as exc:
            if not config.skip_failing or isinstance(exc, ConfigError):
                raise
            metrics[f"skipped.{kind}"] = str(exc)
            continue
        fitted.append(member)
        metrics.update({f"{kind}.{k}": v for k, v in member_metrics.items()})
    if not fitted:
        reasons = "; ".join(f"{k.split('.', 1)[1]}: {v}" for k, v in metrics.items() if k.startswith("skipped."))
        raise UserError(f"router 'stack': none of its members {config.members} can train on this dataset ({reasons})")
    resolved = (replace(config, members=[m.kind for m in fitted], configs=[asdict(m.config) for m in fitted])
                if config.configs else
                replace(config, members=[m.kind for m in fitted], member_configs={m.kind: asdict(m.config) for m in fitted}))
    router = StackRouter(resolved, **ctx.router_kwargs(encoder=True))
    router.set_members(fitted, np.full(len(fitted), 1.0 / len(fitted)))
    objective = _val_objective(ctx, router) if len(fitted) > 1 else None
    if objective is not None:
        best_w, best = None, float("inf")
        for w in simplex_grid(len(fitted), config.step):
            value = objective(w)
            if value < best - 1e-12:
                best_w, best = w, value
        router.set_members(fitted, best_w)
        metrics["val_objective"] = -best if ctx.val is not None and len(ctx.val) else best
    metrics.update({f"weight.{m.kind}": float(w) for m, w in zip(fitted, router.stack_weights_, strict=True)})
    return router, metrics
