"""A promotion gate that knows noise: a paired bootstrap of two routers on the same prompts.

Comparing two point estimates promotes on noise: on a few hundred prompts the 95% intervals of two
routers' gap closed easily overlap by more than their difference. The paired bootstrap resamples the
prompts once per draw and scores *both* routers on that same resample, so what the prompts have in
common (hard prompts are hard for both) cancels in the difference, and the interval is of the
difference itself. A candidate is promoted only when the lower bound of that interval exceeds
``min_improvement``.

Decisions of a router do not depend on the other prompts, so a resample only re-weights the
per-prompt realised cost and quality (the trick :func:`routerzoo.evaluation.report._bootstrap` uses):
each draw costs two hull integrals per router, not a re-prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routerzoo.errors import UserError
from routerzoo.evaluation.report import _stats, _sweep
from routerzoo.evaluation.sweep import _matrix, _pred_cost

#: metrics the paired bootstrap can resample (curve metrics, "higher is better")
PAIRED_METRICS = ("gap_closed", "aiq", "max_quality")
#: per-prompt means the paired bootstrap resamples (served traffic: :mod:`routerzoo.zoo.traffic`)
MEAN_METRICS = ("mean_reward",)


@dataclass(frozen=True)
class Scored:
    """One router's predictions on the gate's prompts and the truth for its candidate models.

    Attributes:
        pred_quality: (n, m) predicted quality.
        pred_cost: (n, m) or (m,) predicted USD per prompt.
        true_quality: (n, m) realised quality.
        true_cost: (n, m) realised USD per prompt.
    """

    pred_quality: np.ndarray
    pred_cost: np.ndarray
    true_quality: np.ndarray
    true_cost: np.ndarray


@dataclass(frozen=True)
class GateResult:
    """The paired comparison: point values, the difference and its interval (candidate − incumbent)."""

    metric: str
    candidate: float
    incumbent: float
    delta: float
    ci: tuple[float, float]
    confidence: float
    min_improvement: float
    n_prompts: int
    n_boot: int

    @property
    def better(self) -> bool:
        """Promote: the whole interval of the difference lies above ``min_improvement``."""
        return bool(np.isfinite(self.ci[0]) and self.ci[0] > self.min_improvement)

    def describe(self) -> str:
        """One line: both values, the difference and its interval."""
        lo, hi = self.ci
        return (f"{self.metric} {self.candidate:.4f} vs {self.incumbent:.4f}: delta {self.delta:+.4f}, "
                f"{self.confidence:.0%} paired CI [{lo:+.4f}, {hi:+.4f}] over {self.n_prompts} prompts "
                f"(needs lower bound > {self.min_improvement:+.4f})")

    def record(self) -> dict:
        """JSON-able fields for the promotion record."""
        return {"metric": self.metric, "candidate": self.candidate, "incumbent": self.incumbent, "delta": self.delta,
                "ci": [float(self.ci[0]), float(self.ci[1])], "confidence": self.confidence,
                "min_improvement": self.min_improvement, "n_prompts": self.n_prompts, "n_boot": self.n_boot,
                "better": self.better}


def _value(stats: dict, metric: str) -> float:
    if metric == "gap_closed":
        return float(stats["gap"])
    if metric == "aiq":
        return float(stats["aiq_r"])
    return float(stats["q_r"].max())  # max_quality


def check_gate_args(metric: str, confidence: float, min_improvement: float, n_boot: int,
                    metrics: tuple[str, ...] = PAIRED_METRICS) -> None:
    """Refuse bad gate settings with one line naming the flag."""
    if metric not in metrics:
        raise UserError(f"--metric {metric!r}: the paired bootstrap gate resamples {', '.join(metrics)}")
    if not 0.5 <= float(confidence) < 1.0:
        raise UserError(f"--confidence {confidence}: give a level in [0.5, 1), e.g. 0.95")
    if not np.isfinite(min_improvement):
        raise UserError(f"--min-improvement {min_improvement}: give a finite number, e.g. 0.01")
    if int(n_boot) < 100:
        raise UserError(f"bootstrap resamples {n_boot}: use at least 100")


def paired_bootstrap(candidate: Scored, incumbent: Scored, metric: str = "gap_closed", *, confidence: float = 0.95,
                     min_improvement: float = 0.0, n_boot: int = 2000, seed: int = 0,
                     n_points: int = 64) -> GateResult:
    """Percentile interval of ``metric(candidate) − metric(incumbent)`` over joint resamples of prompts.

    Both routers must be scored on the same n prompts in the same row order (their candidate models
    may differ). Each draw resamples prompt indices once and evaluates both routers on it.

    Returns:
        The :class:`GateResult`; resamples where the metric is undefined (e.g. a zero oracle gap)
        are left out of the interval.
    """
    check_gate_args(metric, confidence, min_improvement, n_boot)
    n = candidate.true_quality.shape[0]
    if incumbent.true_quality.shape[0] != n:
        raise UserError(f"paired bootstrap: {n} and {incumbent.true_quality.shape[0]} prompts; both routers must be "
                        "scored on the same prompts")
    if n < 2:
        raise UserError(f"paired bootstrap: {n} prompt(s) to compare on; the gate needs a split with more")
    sweeps = []
    for s in (candidate, incumbent):
        pq = _matrix(s.pred_quality, "pred_quality")
        sweeps.append(_sweep(pq, _pred_cost(s.pred_cost, pq.shape), _matrix(s.true_quality, "true_quality"),
                             _matrix(s.true_cost, "true_cost", nonnegative=True), n_points, None))
    uniform = np.full(n, 1.0 / n)
    cand, inc = (_value(_stats(sw, uniform), metric) for sw in sweeps)
    weights = _joint_resamples(n, n_boot, seed)
    diffs = np.array([_value(_stats(sweeps[0], w), metric) - _value(_stats(sweeps[1], w), metric) for w in weights])
    ci = _percentile_interval(diffs, confidence)
    return GateResult(metric, cand, inc, cand - inc, ci, float(confidence), float(min_improvement), n, int(n_boot))


def _joint_resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) weights of prompt resamples; each row is applied to both routers (the pairing)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)) / n


def _percentile_interval(diffs: np.ndarray, confidence: float) -> tuple[float, float]:
    diffs = diffs[np.isfinite(diffs)]  # resamples where the metric is undefined are left out
    if not diffs.size:
        return float("nan"), float("nan")
    alpha = 1.0 - float(confidence)
    return float(np.quantile(diffs, alpha / 2)), float(np.quantile(diffs, 1 - alpha / 2))


def paired_mean_bootstrap(candidate: np.ndarray, incumbent: np.ndarray, metric: str = "mean_reward", *,
                          confidence: float = 0.95, min_improvement: float = 0.0, n_boot: int = 2000,
                          seed: int = 0) -> GateResult:
    """Percentile interval of ``mean(candidate) − mean(incumbent)`` over joint resamples of prompts.

    The per-prompt form of :func:`paired_bootstrap`: ``candidate[i]`` and ``incumbent[i]`` are the
    two routers' values on the same prompt i (e.g. the reward of the model each chose), so each
    draw resamples prompts once for both and the interval is of the difference.

    Args:
        candidate: (n,) the candidate's per-prompt values.
        incumbent: (n,) the incumbent's, in the same prompt order.
    """
    check_gate_args(metric, confidence, min_improvement, n_boot, metrics=MEAN_METRICS)
    cand_v, inc_v = np.asarray(candidate, dtype=np.float64), np.asarray(incumbent, dtype=np.float64)
    n = cand_v.shape[0]
    if inc_v.shape != cand_v.shape or cand_v.ndim != 1:
        raise UserError(f"paired bootstrap: {cand_v.shape} and {inc_v.shape} values; both routers must be scored on "
                        "the same prompts")
    if n < 2:
        raise UserError(f"paired bootstrap: {n} prompt(s) to compare on; the gate needs more")
    diffs = _joint_resamples(n, n_boot, seed) @ (cand_v - inc_v)  # a mean is linear in the weights: one product
    cand, inc = float(cand_v.mean()), float(inc_v.mean())
    return GateResult(metric, cand, inc, cand - inc, _percentile_interval(diffs, confidence), float(confidence),
                      float(min_improvement), n, int(n_boot))


def score_on_common_prompts(routers: dict, dataset, split: str) -> dict[str, Scored]:
    """Predict with every router on the prompts of ``split`` that all of them can be scored on.

    A router is scored on its own candidate models; the rows are the prompts where every model of
    every router has an outcome, in one order, so the resamples pair.
    """
    from routerzoo.evaluation.runner import _check_models, use_embedding_cache

    if dataset.outcomes is None:
        raise UserError(f"dataset {dataset.name} has no outcomes: the paired gate needs benchmark outcomes")
    for router in routers.values():
        _check_models(router, dataset)
    union = sorted({m for r in routers.values() for m in r.models})
    matrix = dataset.outcome_matrix(split=split, models=union).complete()
    if len(matrix) < 2:
        raise UserError(f"dataset {dataset.name} has {len(matrix)} prompt(s) in split {split!r} with outcomes for "
                        f"all of {union}: too few to compare on")
    out = {}
    for label, router in routers.items():
        own = matrix.select_models(list(router.models))
        use_embedding_cache(router)
        pred = router.predict(own.prompts)
        out[label] = Scored(pred.quality, pred.cost, own.quality, own.cost)
    return out
