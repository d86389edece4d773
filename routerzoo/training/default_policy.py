"""The default policy a trained router ships with, chosen on out-of-fold predictions.

Why: an uncalibrated router's default is λ = 0, "the best predicted quality at any price", which
sends nearly every prompt to the most expensive model: served as it is, the router is a costly
proxy. After cross-validation every train+val prompt has an out-of-fold prediction, so the cost
weight can be chosen on predictions the router did not fit.

The target is "match the best single model's quality at the lowest cost": the cheapest λ whose
out-of-fold routed quality reaches the quality of the single model that is best on those prompts,
less one standard error of that quality (a router within one SE of it is level with it as far as
the data can tell; demanding more would make the target a coin toss on noise).
It is defensible without asking the user for a number: the router is then never worse than
"always the best model" on held-out prompts (in expectation) and saves whatever routing can save.
The realised quality and cost are cross-validated too (λ chosen on K−1 folds, measured on the
held-out one), so the figures reported carry an interval.

The λ search itself is :func:`routerzoo.training.calibrate.choose_cost_weight`, the one
``routerzoo calibrate`` uses, and the result is stored the way ``calibrate`` stores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import UserError

POLICIES = ("match-best", "none")


@dataclass
class PolicyChoice:
    """A chosen default cost weight and what it realises on held-out folds.

    Attributes:
        cost_weight: λ of the default argmax policy.
        target_quality: the best single model's mean quality on the prompts, less one standard error.
        quality: realised mean quality at λ, cross-validated (mean over folds), and its 95% interval.
        cost: realised mean USD per prompt at λ, cross-validated, and its 95% interval.
        best_single_cost: the best single model's mean USD per prompt.
        useful_range: (λ_lo, λ_hi): below λ_lo routing equals λ = 0, from λ_hi on every prompt goes
            to the cheapest predicted model.
    """

    cost_weight: float
    target_quality: float
    quality: tuple[float, float, float]
    cost: tuple[float, float, float]
    best_single_cost: float
    useful_range: tuple[float, float]

    def to_dict(self) -> dict:
        return {"target": "match-best", "cost_weight": self.cost_weight, "target_quality": self.target_quality,
                "cv_quality": list(self.quality), "cv_cost": list(self.cost), "best_single_cost": self.best_single_cost,
                "useful_cost_weights": list(self.useful_range)}

    def describe(self) -> str:
        q, c = self.quality, self.cost
        saving = 1 - c[0] / self.best_single_cost if self.best_single_cost > 0 else float("nan")
        return (f"default policy: λ = {self.cost_weight:.4g} (match the best single model's quality, "
                f"{self.target_quality:.4f} within one SE, at the lowest cost); cross-validated: quality {q[0]:.4f} "
                f"[{q[1]:.4f}, {q[2]:.4f}], cost ${c[0]:.3g} [{c[1]:.3g}, {c[2]:.3g}]/prompt, "
                f"{100 * saving:.0f}% below the best single model's ${self.best_single_cost:.3g}; "
                f"useful λ range [{self.useful_range[0]:.4g}, {self.useful_range[1]:.4g}]")


def useful_range(pq: np.ndarray, pc: np.ndarray, n_points: int = 400) -> tuple[float, float]:
    """(λ_lo, λ_hi): the cost weights between which routing decisions change at all."""
    from routerzoo.evaluation.sweep import cost_weight_grid
    from routerzoo.routers.policies.argmax import decide

    spread = float(np.ptp(pq)) or 1.0
    grid = cost_weight_grid(pc, n_points, quality_range=spread)
    first, last = decide(pq, pc, float(grid[0])), decide(pq, pc, float(grid[-1]))
    lo = next((float(g) for g in grid if not np.array_equal(decide(pq, pc, float(g)), first)), float(grid[-1]))
    hi = next((float(g) for g in grid if np.array_equal(decide(pq, pc, float(g)), last)), float(grid[-1]))
    return lo, hi


def _interval(x: np.ndarray) -> tuple[float, float, float]:
    mean = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else float("nan")
    return mean, mean - half, mean + half


def _match_best(tq: np.ndarray):
    """The quality target: the best single model's mean quality less one standard error of it."""
    from routerzoo.training.calibrate import Target

    best = tq[:, int(np.argmax(tq.mean(axis=0)))]
    se = float(best.std(ddof=1)) / math.sqrt(len(best)) if len(best) > 1 else 0.0
    return Target("quality", float(best.mean()) - se)


def choose_default_policy(pq: np.ndarray, pc: np.ndarray, tq: np.ndarray, tc: np.ndarray, fold: np.ndarray,
                          models: list[str]) -> PolicyChoice | None:
    """The cheapest λ whose routed quality reaches the best single model's, on out-of-fold predictions.

    Args:
        pq, pc: (n, m) out-of-fold predicted quality and cost.
        tq, tc: (n, m) true quality and cost (NaN where a model has no outcome).
        fold: (n,) fold index of each prompt.
        models: the m model names.

    Returns:
        The choice, or None when there are too few complete prompts or no λ reaches the target.
    """
    from routerzoo.routers.policies.argmax import decide
    from routerzoo.training.calibrate import choose_cost_weight

    ok = ~np.isnan(tq).any(axis=1) & np.isfinite(pq).all(axis=1) & np.isfinite(pc).all(axis=1)
    if ok.sum() < 10:
        return None
    pq, pc, tq, tc, fold = pq[ok], pc[ok], tq[ok], np.nan_to_num(tc[ok], nan=0.0), fold[ok]
    target = _match_best(tq)
    try:
        lam, _ = choose_cost_weight(pq, pc, tq, tc, models, target)
    except UserError:
        return None
    # cross-validated realised figures: λ chosen on the other folds, measured on the held-out one
    qs, cs = [], []
    for f in np.unique(fold):
        inner, held = fold != f, fold == f
        if held.sum() == 0 or inner.sum() < 10:
            continue
        target_f = _match_best(tq[inner])
        try:
            lam_f, _ = choose_cost_weight(pq[inner], pc[inner], tq[inner], tc[inner], models, target_f)
        except UserError:
            lam_f = 0.0
        d = decide(pq[held], pc[held], lam_f)
        rows = np.arange(int(held.sum()))
        qs.append(float(tq[held][rows, d].mean()))
        cs.append(float(tc[held][rows, d].mean()))
    if not qs:
        return None
    best = int(np.argmax(tq.mean(axis=0)))
    return PolicyChoice(lam, target.value, _interval(np.array(qs)), _interval(np.array(cs)),
                        float(tc[:, best].mean()), useful_range(pq, pc))


def apply_default_policy(router, choice: PolicyChoice) -> None:
    """Store λ as the router's default policy (as ``routerzoo calibrate`` does) and in its lineage."""
    from routerzoo.routers.policies.argmax import ArgmaxConfig, ArgmaxPolicy

    router.policy = ArgmaxPolicy(ArgmaxConfig(cost_weight=choice.cost_weight))
    router.lineage = dict(router.lineage, default_policy=choice.to_dict())
