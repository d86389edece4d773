"""Joint assignment of a batch: maximise total predicted quality under a budget and per-model capacity.

λ-argmax decides each prompt alone; a budget for the whole batch ("answer these 2,000 prompts for
$5") or a cap on a model's share ("at most 20% of the traffic to the self-hosted model") couples the
prompts. The batch problem is the integer program, over x_ij ∈ {0, 1} (prompt i goes to model j)::

    maximise    Σ_ij q̂_ij x_ij
    subject to  Σ_j x_ij = 1                       for every prompt i
                Σ_ij ĉ_ij x_ij <= B                (budget, USD for the batch)
                Σ_i x_ij <= floor(s_j · n)         for every capped model j (share s_j)

With the budget alone it is a multiple-choice knapsack; with capacities alone a transportation
problem (totally unimodular: its LP is already integral); with both, neither.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.prediction import Prediction
from routerzoo.routers.policies.argmax import decide as argmax_decide
from routerzoo.routers.policies.base import BatchPolicy

__all__ = ["AssignmentConfig", "AssignmentPolicy", "InfeasibleError", "SolverError", "capacity_counts"]

log = logging.getLogger(__name__)

# A share s allows floor(s·n + _SHARE_EPS) prompts, so that 0.3 · 10 = 2.9999999999999996 still allows 3.
_SHARE_EPS = 1e-9


class InfeasibleError(UserError):
    """The budget or capacities cannot be met by any assignment; the message says by how much."""


class SolverError(UserError):
    """The solver found no feasible assignment in the time allowed (or failed)."""


@dataclass
class AssignmentConfig:
    """Batch assignment under a budget and per-model capacity.

    Attributes:
        budget: total USD the batch may cost, by the router's predicted costs; None for no budget.
        budget_per_prompt: the same budget said per prompt (the batch budget is this times the
            batch size); None for no budget. Give at most one of ``budget`` and ``budget_per_prompt``.
        capacity: model name -> largest share of the batch it may receive, in (0, 1]; a capped model
            receives at most ``floor(share · n)`` of n prompts. Models not named are uncapped.
        time_limit_s: wall-clock limit of the solve (LP, then the MILP over the prompts the LP left
            fractional), seconds. If the MILP runs out of time the best feasible assignment found so
            far is used (with a warning in the log); if there is none, SolverError.
        mip_rel_gap: relative optimality gap at which the MILP stops; 0 asks for a proven optimum.
        max_exact_prompts: most prompts re-solved together by one MILP after the LP (see
            :class:`AssignmentPolicy`); more is closer to the proven optimum and slower.
    """

    budget: float | None = None
    budget_per_prompt: float | None = None
    capacity: dict[str, float] | None = None
    time_limit_s: float = 10.0
    mip_rel_gap: float = 1e-6
    max_exact_prompts: int = 300

    def __post_init__(self):
        if self.budget is not None and self.budget_per_prompt is not None:
            raise ConfigError(
                f"give budget ({self.budget}) or budget_per_prompt ({self.budget_per_prompt}), not both"
            )
        for name in ("budget", "budget_per_prompt"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number of USD >= 0, got {v!r}")
        if self.capacity is not None:
            if not isinstance(self.capacity, dict):
                raise ConfigError(f"capacity must map model names to shares, got {self.capacity!r}")
            for model, share in self.capacity.items():
                if not isinstance(model, str) or not model:
                    raise ConfigError(f"capacity: model names must be non-empty strings, got {model!r}")
                if not (isinstance(share, (int, float)) and math.isfinite(share) and 0 < share <= 1):
                    raise ConfigError(f"capacity[{model!r}] must be a share in (0, 1], got {share!r}")
        if not (math.isfinite(self.time_limit_s) and self.time_limit_s > 0):
            raise ConfigError(f"time_limit_s must be a positive number of seconds, got {self.time_limit_s}")
        if not (math.isfinite(self.mip_rel_gap) and 0 <= self.mip_rel_gap < 1):
            raise ConfigError(f"mip_rel_gap must be in [0, 1), got {self.mip_rel_gap}")
        if (
            isinstance(self.max_exact_prompts, bool)
            or not isinstance(self.max_exact_prompts, int)
            or self.max_exact_prompts < 1
        ):
            raise ConfigError(f"max_exact_prompts must be an integer >= 1, got {self.max_exact_prompts!r}")

    def total_budget(self, n: int) -> float | None:
        """The batch budget in USD for a batch of ``n`` prompts (None when there is none)."""
        if self.budget is not None:
            return float(self.budget)
        if self.budget_per_prompt is not None:
            return float(self.budget_per_prompt) * n
        return None


def capacity_counts(capacity: dict[str, float] | None, models: list[str], n: int) -> np.ndarray:
    """Most prompts each model may receive: ``floor(share · n)`` for capped models, n otherwise.

    Args:
        capacity: model -> share in (0, 1], or None.
        models: the m candidate names, in column order.
        n: batch size.

    Returns:
        (m,) int counts.

    Raises:
        UserError: a capped model is not a candidate (the message lists the candidates).
    """
    counts = np.full(len(models), n, dtype=np.int64)
    if not capacity:
        return counts
    unknown = sorted(set(capacity) - set(models))
    if unknown:
        raise UserError(f"capacity names model(s) {unknown} that are not candidates; candidates: {models}")
    for model, share in capacity.items():
        counts[models.index(model)] = math.floor(share * n + _SHARE_EPS)
    return counts


class AssignmentPolicy(BatchPolicy):
    """Assign a whole batch jointly: maximise total predicted quality within a budget and capacities.

    Decision rule (``decide``):

    1. No budget and no capacity: exactly λ-argmax with λ = 0
       (:func:`routerzoo.routers.policies.argmax.decide`, ties to the cheaper model).
    2. If that argmax assignment already meets the budget and capacities it is returned: it has the
       highest total quality of all assignments, so it is optimal for the constrained problem too.
    3. Otherwise the integer program of the module docstring is solved in three steps, all HiGHS
       through scipy:

       a. the LP relaxation (``linprog``, interior point + crossover, so the solution is a vertex,
          which splits only about one prompt per coupling constraint between models);
       b. an incumbent: the prompts the LP assigns integrally keep their model, the split ones are
          solved exactly (``milp``, all m models) against the budget and capacities left over;
       c. reduced-cost fixing: any assignment's objective is at least the LP bound plus the LP's
          reduced costs of the variables it moves off their LP values, so every variable whose
          reduced cost exceeds the incumbent's gap to the LP bound keeps its LP value in any better
          assignment. The prompts still left with a choice are solved exactly together if there are
          at most ``max_exact_prompts`` of them (a proven optimum, to ``mip_rel_gap``); otherwise
          the ``max_exact_prompts`` with the cheapest alternatives are, and the round repeats with
          the better incumbent's smaller gap (at most 4 rounds).

       If step b finds no integer completion (rare) the full MILP is solved instead. The objective
       carries a tie-breaking term ``+ε·ĉ_ij`` with ``ε·Σ_i max_j ĉ_ij = 1e-7 · (quality spread)``:
       it can never cost more than that much total quality, and among equally good assignments it
       prefers the cheaper one (binary predicted qualities tie a lot).

    Why not the full MILP, or LP + rounding: benchmarked on n = 2000 prompts × m = 15 models
    (30,000 binaries; predicted qualities in [0, 1], continuous or binarised; log-uniform per-model
    prices × a log-normal prompt length; budget half-way between the cheapest feasible and the
    unconstrained-argmax cost; capacity 10% for every model; 2 CPU cores, scipy 1.17; 3 seeds):

    ==========================  =============  ==============  =====================================
    constraints                  this policy    full ``milp``   total quality (seed 0)
    ==========================  =============  ==============  =====================================
    budget                       0.3-0.7 s      3.1 s           equal: 1891.1996 (LP bound +9e-4)
    capacity                     0.2-0.3 s      (LP integral)   optimal (transportation problem)
    budget + capacity            0.7-2.6 s      10.9 s          equal: 1818.8871
    budget, binary quality       0.2-0.3 s      0.9 s           equal: 1598
    both, binary quality         0.2 s          7.1 s           equal: 2000
    ==========================  =============  ==============  =====================================

    The full MILP with a 10 s limit also returned *no* feasible assignment on one "budget +
    capacity" seed. LP + rounding alone (step b) took 0.15-0.3 s but lost up to one prompt's quality
    per coupling constraint (-0.16 on "budget + capacity" seed 0) and falls into knapsack traps (see
    ``tests/test_policies.py``). A brute-force check on 275 random small problems found no
    suboptimal answer. Rerun the timing: ``pytest -m slow tests/test_policies.py -s``.

    The budget is met exactly: the budget row is scaled to O(1) coefficients; a MILP solution that
    overspends within HiGHS's feasibility tolerance is solved again with the budget tightened past
    it; and the final assignment is checked (and, should it still be over, repaired greedily) so
    that ``Σ ĉ <= budget`` holds in floating point.

    Raises (from ``decide``):
        InfeasibleError: capacities allow fewer than n prompts, or the budget is below the cheapest
            assignment that meets the capacities; the message gives both numbers and the shortfall.
        UserError: a capacity names a model that is not a candidate, or the predictions do not match
            the candidates or are not finite.
        SolverError: the time limit expired before any feasible assignment was found.
    """

    kind = "assignment"
    Config = AssignmentConfig

    def decide(self, pred: Prediction, models: list[str]) -> np.ndarray:
        """Model index per prompt, chosen jointly for the batch.

        Args:
            pred: predictions of shape (n, m): quality and USD cost.
            models: the m candidate names, in column order.

        Returns:
            (n,) int indices into ``models``.
        """
        q = np.asarray(pred.quality, dtype=np.float64)
        c = np.asarray(pred.cost, dtype=np.float64)
        n, m = q.shape
        models = list(models)
        if len(models) != m:
            raise UserError(f"{len(models)} candidate names for predictions of {m} models")
        cfg = self.config
        caps = capacity_counts(cfg.capacity, models, n)
        budget = cfg.total_budget(n)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if not (np.isfinite(q).all() and np.isfinite(c).all()):
            raise UserError("predicted quality and cost must be finite to assign a batch")

        if int(caps.sum()) < n:
            capped = {mdl: int(k) for mdl, k in zip(models, caps, strict=True) if k < n}
            raise InfeasibleError(
                f"capacities allow only {int(caps.sum())} of {n} prompts (short by {n - int(caps.sum())}); "
                f"capped counts floor(share·n): {capped}; raise a share or uncap a model"
            )
        cheapest = float(c.min(axis=1).sum())
        if budget is not None and budget < cheapest:
            raise InfeasibleError(_budget_message(budget, cheapest, n, with_capacity=False))

        choice = argmax_decide(q, c, 0.0)
        if _feasible(choice, c, caps, budget):
            return choice
        return self._solve(q, c, caps, budget)

    def _solve(self, q: np.ndarray, c: np.ndarray, caps: np.ndarray, budget: float | None) -> np.ndarray:
        """Steps a-c of the class docstring; (n,) model indices."""
        from scipy.optimize import linprog

        n, m = q.shape
        cfg = self.config
        deadline = time.monotonic() + float(cfg.time_limit_s)
        spread = float(np.ptp(q)) or 1.0
        top = float(c.max(axis=1).sum())
        eps = 1e-7 * spread / top if top > 0 else 0.0
        objective = -q + eps * c  # (n, m); x is flattened row-major, x[i * m + j]
        # budget row scaled to coefficients <= 1: HiGHS's tolerances are absolute
        scale = float(np.abs(c).max()) or 1.0

        a_eq, a_ub, b_ub = _constraints(c / scale, caps, None if budget is None else budget / scale)
        # interior point + crossover returns a vertex (at most about one fractional prompt per coupling
        # constraint); on these degenerate problems it is 2-10x faster than dual simplex
        lp = linprog(
            objective.ravel(), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1),
            method="highs-ipm", options={"time_limit": float(cfg.time_limit_s)},
        )  # fmt: skip
        if lp.status == 2:  # infeasible: with row-wise feasibility checked, only budget + capacity
            raise InfeasibleError(
                _budget_message(budget, _cheapest_under_capacity(c, caps), n, with_capacity=True)
            )
        if lp.x is None:
            raise SolverError(
                f"the assignment LP failed ({lp.message}); raise time_limit_s (now {cfg.time_limit_s})"
            )
        x = lp.x.reshape(n, m)
        rows = np.arange(n)

        def finish(choice: np.ndarray, free: np.ndarray, allowed: np.ndarray | None) -> np.ndarray | None:
            """``choice`` with the ``free`` rows re-solved exactly (within ``allowed`` models) against
            what the fixed rows leave of the budget and capacities; None if no solution was found."""
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            fixed = np.ones(n, dtype=bool)
            fixed[free] = False
            used = np.bincount(choice[fixed], minlength=m)
            rest = None if budget is None else budget - float(c[rows[fixed], choice[fixed]].sum())
            sub_allowed = None if allowed is None else allowed[free]
            sub = _milp(
                objective[free], c[free], caps - used, rest, scale, left, cfg.mip_rel_gap, sub_allowed
            )
            if sub is None:
                return None
            out = choice.copy()
            out[free] = sub
            return out

        # 1. an incumbent: keep the prompts the LP assigns integrally, solve the split ones exactly
        incumbent = x.argmax(axis=1).astype(np.int64)
        frac = np.flatnonzero(((x > 1e-9) & (x < 1 - 1e-9)).any(axis=1))
        if frac.size:
            incumbent = finish(incumbent, frac, None)
        if incumbent is None:
            # the split prompts had no integer completion (rare) or time ran short: the whole problem
            log.info("assignment: LP rounding failed on %d prompts; solving the full MILP", frac.size)
            incumbent = _milp(
                objective, c, caps, budget, scale, max(deadline - time.monotonic(), 1.0), cfg.mip_rel_gap
            )
            if incumbent is None:
                raise SolverError(
                    f"the assignment solver found no feasible assignment in time; "
                    f"raise time_limit_s (now {cfg.time_limit_s}) or loosen the budget/capacities"
                )
            return _repair_budget(incumbent, q, c, caps, budget) if budget is not None else incumbent

        # 2. reduced-cost fixing: every integer assignment x has objective
        #    >= z_LP + Σ_{x_ij at 0 in the LP} d_ij x_ij + Σ_{x_ij at 1} d'_ij (1 - x_ij), with d, d' >= 0
        #    the LP's bound multipliers. So a variable whose multiplier exceeds the incumbent's gap to
        #    the LP bound keeps its LP value in every assignment at least as good as the incumbent. If
        #    few prompts are left with a choice they are solved exactly (a proven optimum); otherwise
        #    the max_exact_prompts of them with the cheapest alternatives are, and the smaller gap of
        #    the better incumbent fixes more variables in the next round.
        at0 = lp.lower.marginals.reshape(n, m)
        at1 = -lp.upper.marginals.reshape(n, m)
        z_lp = float(lp.fun)
        tiny = 1e-9 * (1.0 + abs(z_lp))
        best, z_best = incumbent, float(objective[rows, incumbent].sum())
        proven = False
        for _ in range(4):
            gap = max(z_best - z_lp, 0.0) + tiny
            allowed = ~((x < 0.5) & (at0 > gap))
            forced = (x > 0.5) & (at1 > gap)
            has_forced = forced.any(axis=1)
            allowed[has_forced] = forced[has_forced]
            allowed[rows, best] = True  # never cut the incumbent (tolerances)
            free = np.flatnonzero(allowed.sum(axis=1) > 1)
            if free.size == 0 or gap <= 2 * tiny:
                proven = True
                break
            if free.size <= cfg.max_exact_prompts:
                hood = free
            else:
                alt = np.where(allowed & (x < 0.5), at0, np.inf)
                alt[rows, best] = np.inf
                hood = free[np.argsort(alt[free].min(axis=1), kind="stable")[: cfg.max_exact_prompts]]
            better = finish(best, np.sort(hood), allowed)
            if better is not None and float(objective[rows, better].sum()) < z_best - tiny:
                best, z_best = better, float(objective[rows, better].sum())
            elif hood.size < free.size:
                break  # the neighbourhood cannot improve: stop searching
            if hood.size == free.size:
                proven = better is not None
                break
        log.debug(
            "assignment: %d fractional prompts, %d free after fixing, gap to LP bound %.3g, proven optimal: %s",
            frac.size, free.size, z_best - z_lp, proven,
        )  # fmt: skip
        return _repair_budget(best, q, c, caps, budget) if budget is not None else best


def _constraints(c: np.ndarray, caps: np.ndarray, budget: float | None):
    """Sparse constraint matrices of the assignment problem for ``k`` prompts and ``m`` models.

    Returns:
        ``(a_eq, a_ub, b_ub)``: (k, k·m) one-model-per-prompt rows; the capacity rows of the capped
        models and the budget row (cost ``c`` of shape (k, m)) stacked, or None when there are none.
    """
    from scipy import sparse

    k, m = c.shape
    cols = np.arange(k * m)
    a_eq = sparse.csr_matrix((np.ones(k * m), (cols // m, cols)), shape=(k, k * m))
    rows, rhs = [], []
    capped = np.flatnonzero(caps < k)
    if capped.size:
        r = np.repeat(np.arange(capped.size), k)
        x = (np.arange(k)[None, :] * m + capped[:, None]).ravel()
        rows.append(sparse.csr_matrix((np.ones(r.size), (r, x)), shape=(capped.size, k * m)))
        rhs.append(caps[capped].astype(np.float64))
    if budget is not None:
        rows.append(sparse.csr_matrix(c.reshape(1, -1)))
        rhs.append(np.array([budget]))
    if not rows:
        return a_eq, None, None
    return a_eq, sparse.vstack(rows).tocsr(), np.concatenate(rhs)


def _milp(objective, c, caps, budget, scale, time_limit, gap, allowed=None) -> np.ndarray | None:
    """Exact MILP of a (k, m) assignment problem; (k,) model indices, or None if none was found.

    The budget row is the costs divided by ``scale``. HiGHS meets constraints to within an absolute
    tolerance (1e-7), so a solution may overspend by a hair: it is then solved once more with the
    budget tightened by 1e-6 (on the scaled row), which it meets exactly. Not tightening first keeps
    the optimum when the budget is exactly binding; should even that overspend, it is returned for
    :func:`_repair_budget`. ``allowed``, of shape (k, m), bool, restricts
    each prompt to some models.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    k, m = c.shape
    caps = np.minimum(caps, k)
    if (caps < 0).any() or int(caps.sum()) < k:
        return None
    upper = 1.0 if allowed is None else allowed.ravel().astype(np.float64)
    tries = [None] if budget is None else [budget / scale, budget / scale - 1e-6]
    rows = np.arange(k)
    for rhs in tries:
        a_eq, a_ub, b_ub = _constraints(c / scale, caps, rhs)
        cons = [LinearConstraint(a_eq, 1.0, 1.0)]
        if a_ub is not None:
            cons.append(LinearConstraint(a_ub, -np.inf, b_ub))
        res = milp(
            objective.ravel(), constraints=cons, integrality=np.ones(k * m), bounds=Bounds(0, upper),
            options={"time_limit": float(time_limit), "mip_rel_gap": float(gap), "disp": False},
        )  # fmt: skip
        if res.x is None:
            return None  # infeasible or out of time: tightening cannot help
        if res.status != 0:
            log.warning("assignment: %s; using the best assignment found", res.message)
        choice = res.x.reshape(k, m).argmax(axis=1).astype(np.int64)
        if budget is None or float(c[rows, choice].sum()) <= budget:
            return choice
    return choice  # still a hair over: the caller's _repair_budget moves a prompt


def _feasible(choice: np.ndarray, c: np.ndarray, caps: np.ndarray, budget: float | None) -> bool:
    """Whether an assignment meets the budget and capacities."""
    n, m = c.shape
    if budget is not None and float(c[np.arange(n), choice].sum()) > budget:
        return False
    return bool((np.bincount(choice, minlength=m) <= caps).all())


def _budget_message(budget: float, cheapest: float, n: int, *, with_capacity: bool) -> str:
    what = (
        "the cheapest assignment that meets the capacities"
        if with_capacity
        else "the cheapest possible assignment"
    )
    short = cheapest - budget
    return (
        f"budget ${budget:.6g} for {n} prompts is below {what}, ${cheapest:.6g} "
        f"(short by ${short:.6g}, ${short / n:.6g} per prompt)"
    )


def _cheapest_under_capacity(c: np.ndarray, caps: np.ndarray) -> float:
    """Total predicted cost of the cheapest assignment within the capacities.

    A transportation problem: its constraint matrix is totally unimodular, so the LP optimum (a
    vertex, which HiGHS's simplex returns) is the integer optimum.
    """
    from scipy.optimize import linprog

    n, _ = c.shape
    a_eq, a_ub, b_ub = _constraints(c, caps, None)
    res = linprog(
        c.ravel(), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1), method="highs-ds"
    )
    return float(res.fun) if res.status == 0 else float("nan")


def _repair_budget(
    choice: np.ndarray, q: np.ndarray, c: np.ndarray, caps: np.ndarray, budget: float
) -> np.ndarray:
    """Move prompts to cheaper models until ``Σ ĉ <= budget`` holds exactly.

    Only ever needed when the solver's tolerances leave the rounded assignment a hair over budget
    (the tightened right-hand side makes that very unlikely). Each step takes the cheaper move with
    the least quality lost per USD saved that keeps the capacities.
    """
    n, m = c.shape
    rows = np.arange(n)
    choice = choice.copy()
    while float(c[rows, choice].sum()) > budget:
        counts = np.bincount(choice, minlength=m)
        saved = c[rows, choice][:, None] - c  # (n, m) USD saved by moving prompt i to model j
        lost = q[rows, choice][:, None] - q
        ok = (saved > 0) & (counts < caps)[None, :]
        if not ok.any():
            break
        ratio = np.where(ok, np.maximum(lost, 0.0) / np.where(ok, saved, 1.0), np.inf)
        i, j = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
        choice[i] = j
    return choice
