"""``routerzoo train --router auto``: pick the router for this dataset by K-fold cross-validation.

No kind is best everywhere, and a single validation split picks wrongly, so ``auto`` does what
AutoML tools (AutoGluon, auto-sklearn) do for tabular data:

1. every candidate (a kind, or ``kind:key=value`` for a kind with a fixed setting, such as
   ``knn:k=40``) is cross-validated on train+val (:mod:`routerzoo.training.cv`) within
   ``time_limit`` seconds; a candidate the budget cuts short is left out;
2. ``method="ensemble"`` (the default): **greedy ensemble selection with replacement** (Caruana et
   al., 2004) over the embedding candidates' out-of-fold predictions, maximising the gap closed of
   the averaged predictions. Its CV is cross-fitted (the selection sees K−1 folds' out-of-fold
   predictions and is scored on the held-out fold's), and it is kept unless that CV mean falls more
   than one standard error below the best single candidate's, in which case the best single
   candidate (by CV mean) is taken. Why not the one-SE rule alone: on noisy data it lands on the
   simplest candidate (``best-single``, 0% gap closed, or an over-smoothed kNN), and which kind wins
   the folds changes with the split, while an average of several kinds changes less;
3. ``method="stack"``: a least-squares cross-fitted stack of the best few distinct kinds, taken
   only if its CV mean beats every single candidate's, else the one-SE choice;
   ``method="select"``: the one-SE choice;
4. the choice is refit on the full train split (validation for early stopping), as ``routerzoo
   train`` does for that kind; an ensemble becomes a ``stack`` artifact of its refit members with
   the selected weights.

The result is a normal artifact (the chosen kind, or a ``stack``) whose lineage holds the CV table.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import yaml

from routerzoo.errors import ConfigError, UserError
from routerzoo.training.context import FitContext
from routerzoo.training.cv import CVResult, Folds, cross_validate, score

AUTO = "auto"
METHODS = ("ensemble", "stack", "select")
#: λ grid points when ensemble selection scores a combination (the report uses 64): the greedy
#: search scores hundreds of combinations, and half the grid halves its time at a hull area within
#: a fraction of a point of the full grid's.
SELECTION_POINTS = 32
#: Ensemble selection scores at most this many prompts (a seeded sample of the rest): its time grows
#: with the prompts, and on 2,000 the gap closed of a combination is already known to about a point.
SELECTION_ROWS = 2000
#: Ensemble selection stops after this many steps without a better ensemble.
SELECTION_PATIENCE = 5

#: Repeated K-fold below this many train+val prompts (``--auto.repeats`` null): on 1,100 prompts the
#: test gap closed of the default ``auto`` moved from 9.2% to 15.6% with the fold seed alone.
REPEAT_BELOW = 2000
SMALL_REPEATS = 3

#: The MLP that also reads the prompt's length: in the pool so that CV decides, per dataset, whether
#: length helps (on the development sets its CV was within a point of the plain MLP's, either way);
#: last, so the time limit cuts it first.
LENGTH_MLP = "mlp:features={prompt_length: true}"

#: Simplest first (the one-SE rule prefers earlier entries: a kNN with more neighbours is the smoother
#: model); each is cheap enough to cross-validate on full MMLU-Pro on 2 CPU cores.
DEFAULT_CANDIDATES = ["best-single", "knn:k=300", "knn:k=100", "knn:k=30", "knn:k=10", "cluster", "sw-elo", "mf", "mlp",
                      LENGTH_MLP]


@dataclass
class AutoConfig:
    """Automatic router selection by K-fold cross-validation (``--cv.folds`` folds).

    Attributes:
        candidates: router kinds to try, simplest first; ``kind:key=value[,key=value]`` fixes settings
            of a kind (``knn:k=40``). The one-SE rule prefers earlier entries.
        time_limit: seconds for the search, refit included (encoding the prompts, done once before
            it, is not counted); a candidate whose folds would not fit in the remaining time is left
            out (the table says so).
        method: "ensemble" (greedy ensemble selection with replacement over the embedding candidates'
            out-of-fold predictions, kept unless its cross-fitted CV mean falls more than one standard
            error below the best single candidate's), "stack" (a least-squares cross-fitted stack of
            the best few kinds when its CV mean beats every single candidate) or "select" (one
            candidate: the one-SE choice).
        max_members: at most this many members (best CV means, one per kind) in the stack.
        shrinkage: weight pulled from the fitted stack weights toward the best member (0: none,
            1: the best member alone); guards against weights tuned to noise.
        step: grid step of the stack weight search on the simplex.
        ensemble_size: greedy steps of ensemble selection (a member's weight is a multiple of
            1/ensemble_size at the finest).
        repeats: repeated K-fold: this many fold assignments (seeds ``seed``, ``seed + 1``, ...), every
            candidate cross-validated on each; the choice and the ensemble weights then rest on R
            out-of-fold predictions per prompt. None: :data:`SMALL_REPEATS` under
            :data:`REPEAT_BELOW` train+val prompts (where one assignment's luck moves the choice most
            and CV is cheap), else 1. Repeats the budget cannot finish for every candidate are dropped.
    """

    candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CANDIDATES))
    time_limit: float = 900.0
    method: str = "ensemble"
    max_members: int = 4
    shrinkage: float = 0.3
    step: float = 0.05
    ensemble_size: int = 25
    repeats: int | None = None

    def __post_init__(self):
        if not self.candidates:
            raise ConfigError("--auto.candidates must name at least one router kind")
        if self.time_limit <= 0:
            raise ConfigError(f"--auto.time_limit must be > 0 seconds, got {self.time_limit}")
        if self.method not in METHODS:
            raise ConfigError(f"--auto.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.ensemble_size < 1:
            raise ConfigError(f"--auto.ensemble_size must be >= 1, got {self.ensemble_size}")
        if self.repeats is not None and self.repeats < 1:
            raise ConfigError(f"--auto.repeats must be >= 1 (or null: automatic), got {self.repeats}")
        if self.max_members < 1:
            raise ConfigError(f"--auto.max_members must be >= 1, got {self.max_members}")
        if not 0 <= self.shrinkage <= 1:
            raise ConfigError(f"--auto.shrinkage must be in [0, 1], got {self.shrinkage}")
        if not 0 < self.step <= 1 or abs(round(1 / self.step) - 1 / self.step) > 1e-9:
            raise ConfigError(f"--auto.step must be in (0, 1] with 1/step an integer, got {self.step}")
        for c in self.candidates:
            parse_candidate(c)


def parse_candidate(name: str) -> tuple[str, object]:
    """``"knn:k=40"`` → ("knn", KNNConfig(k=40)); ``"mf"`` → ("mf", MFConfig())."""
    from routerzoo.routers.core.typed_config import config_from_dict
    from routerzoo.routers.registry import get_kind

    kind, _, rest = str(name).partition(":")
    if kind in (AUTO, "oracle", "stack"):
        raise ConfigError(f"--auto.candidates: {kind!r} cannot be a candidate")
    try:
        spec = get_kind(kind, role="router")
    except UserError as exc:
        raise ConfigError(f"--auto.candidates: {exc}") from None
    if spec.mode != "one-shot" or "outcomes" not in spec.trains_from:
        raise ConfigError(f"--auto.candidates: {kind!r} does not learn one-shot routing from benchmark outcomes")
    values: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"--auto.candidates: {name!r}: settings are key=value, e.g. knn:k=40")
        values[key.strip()] = yaml.safe_load(value)
    try:
        return kind, config_from_dict(spec.load_config(), values, f"--auto.candidates[{name!r}]")
    except UserError as exc:
        raise ConfigError(str(exc)) from None


def one_se_choice(results: list[CVResult]) -> CVResult:
    """The first (simplest) result whose mean gap closed is within one standard error of the best."""
    scored = [r for r in results if r.mean() is not None]
    best = max(scored, key=lambda r: r.mean())
    bar = best.mean() - (best.se() or 0.0)
    return next(r for r in scored if r.mean() >= bar)


def fit_weights(q: np.ndarray, tq: np.ndarray, step: float, shrinkage: float) -> np.ndarray:
    """Simplex weights (K,) of K members' predicted quality (K, n, m), shrunk toward the best member.

    The weights minimise the squared error of the combined quality on the observed outcomes
    (Breiman's stacked regression, non-negative and summing to one): smooth in the weights, so it
    is far less noisy than searching the routing metric itself, and cheap enough for a fine grid.
    """
    from routerzoo.routers.kinds.stack import simplex_grid

    k = q.shape[0]
    obs = ~np.isnan(tq)
    y = tq[obs]
    x = q[:, obs]  # (K, n_observed)
    eye = np.eye(k)
    mse = lambda w: float(np.mean((w @ x - y) ** 2))  # noqa: E731
    best_member = int(np.argmin([mse(eye[i]) for i in range(k)]))
    grid = simplex_grid(k, step)
    errors = np.mean((grid @ x - y) ** 2, axis=1)
    best_w = grid[int(np.argmin(errors))]
    return (1 - shrinkage) * best_w + shrinkage * eye[best_member]


def greedy_ensemble(q: np.ndarray, c: np.ndarray, tq: np.ndarray, tc: np.ndarray, models: list[str],
                    size: int, max_rows: int = SELECTION_ROWS) -> np.ndarray:
    """Ensemble selection with replacement (Caruana et al., 2004): weights (K,) of K members' predictions.

    ``q`` and ``c`` are the members' predicted quality and cost, (K, n, m), on prompts whose outcomes
    ``tq``/``tc`` (n, m) are all observed. Starting from the best member, ``size`` times the member
    whose addition most raises the gap closed of the averaged predictions is added (a member may be
    added again, which weights it up); the best ensemble seen is returned as counts / total. The
    search stops early after :data:`SELECTION_PATIENCE` steps without a better ensemble and scores
    at most ``max_rows`` rows (prompts, or prompts × repeats of repeated K-fold).

    Why this and not free weights or one winner: it optimises the routing metric itself, yet each step
    is one choice among K, so it fits little noise; the averaged members' errors partly cancel, which
    a single kind chosen on noisy folds cannot do (it is AutoGluon's and auto-sklearn's final
    ensemble). On noisy data the kind that wins CV changes with the split; the ensemble changes less.
    """
    from routerzoo.evaluation.report import GapScorer

    k, n = q.shape[0], q.shape[1]
    if n > max_rows:
        rows = np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False))
        q, c, tq, tc = q[:, rows], c[:, rows], tq[rows], tc[rows]
    scorer = GapScorer(tq, tc, n_points=SELECTION_POINTS)

    def metric(w: np.ndarray) -> float:
        g = scorer(np.tensordot(w, q, axes=1), np.tensordot(w, c, axes=1))
        return -np.inf if g is None else g

    eye = np.eye(k)
    singles = [metric(eye[i]) for i in range(k)]
    counts = eye[int(np.argmax(singles))].copy()
    best, best_counts, since = max(singles), counts.copy(), 0
    for _ in range(size - 1):
        trials = [metric((counts + eye[i]) / (counts.sum() + 1)) for i in range(k)]
        j = int(np.argmax(trials))
        counts[j] += 1
        since += 1
        if trials[j] > best + 1e-12:
            best, best_counts, since = trials[j], counts.copy(), 0
        if since >= SELECTION_PATIENCE:
            break
    return best_counts / best_counts.sum()


def cross_fitted(members: list[CVResult], folds: Folds, fit, name: str) -> tuple[CVResult, np.ndarray]:
    """CV of a combination of members and its final weights (K,).

    ``fit(q, c, tq, tc)`` gives weights from members' predictions (K, n, m) and the outcomes. For
    each fold it sees only the other folds' out-of-fold predictions and is scored on the held-out
    fold's, so the CV mean is as honest as a single candidate's; the final weights use every
    out-of-fold prediction.
    """
    from routerzoo.training.cv import FoldResult

    data = folds.data
    ok = ~np.isnan(data.quality).any(axis=1)
    for r in members:
        ok &= np.isfinite(r.oof_quality).all(axis=1) & np.isfinite(r.oof_cost).all(axis=1)
    q = np.stack([r.oof_quality for r in members])
    c = np.stack([r.oof_cost for r in members])
    tq, tc = data.quality, np.nan_to_num(data.cost, nan=0.0)
    fold_results = []
    oq, oc = np.full_like(members[0].oof_quality, np.nan), np.full_like(members[0].oof_cost, np.nan)
    repeat = getattr(folds, "repeat", None)  # repeated K-fold (RepeatedFolds): R rows per prompt
    for f in range(folds.k):
        inner, held = ok & (folds.fold != f), ok & (folds.fold == f)
        if repeat is not None:  # the held-out prompts' rows of other repeats would leak their outcomes
            inner &= repeat == f // folds.k_per_repeat
        if held.sum() < 2 or inner.sum() < 2:
            continue
        t0 = time.perf_counter()
        w = fit(q[:, inner], c[:, inner], tq[inner], tc[inner])
        hq, hc = np.tensordot(w, q[:, held], axes=1), np.tensordot(w, c[:, held], axes=1)
        oq[held], oc[held] = hq, hc
        gap, aiq = score(hq, hc, tq[held], tc[held], data.models)
        fold_results.append(FoldResult(f, int(held.sum()), gap, aiq, time.perf_counter() - t0))
    weights = fit(q[:, ok], c[:, ok], tq[ok], tc[ok])
    return CVResult(name, fold_results, oq, oc, True, repeats=getattr(folds, "repeats", 1)), weights


def cross_fitted_stack(members: list[CVResult], folds: Folds, config: AutoConfig) -> tuple[CVResult, np.ndarray]:
    """CV of the least-squares stack (weights fitted on the other folds' out-of-fold predictions) and its final weights."""
    return cross_fitted(members, folds, lambda q, c, tq, tc: fit_weights(q, tq, config.step, config.shrinkage),
                        "stack(" + "+".join(r.name for r in members) + ")")


def cross_fitted_ensemble(members: list[CVResult], folds: Folds, config: AutoConfig) -> tuple[CVResult, np.ndarray]:
    """CV of greedy ensemble selection (:func:`greedy_ensemble`) and its final weights."""
    models = folds.data.models
    rows = SELECTION_ROWS * getattr(folds, "repeats", 1)
    return cross_fitted(members, folds,
                        lambda q, c, tq, tc: greedy_ensemble(q, c, tq, tc, models, config.ensemble_size, rows),
                        "ensemble")


def _uses_embeddings(kind: str) -> bool:
    from routerzoo.routers.registry import get_kind

    return get_kind(kind, role="router").load_class().uses_embeddings


def _stack_members(scored: list[CVResult], kinds: dict[str, str], config: AutoConfig) -> list[CVResult]:
    """The best candidate of each distinct embedding kind, best CV means first, at most max_members."""
    from routerzoo.routers.registry import get_kind

    seen, out = set(), []
    for r in sorted(scored, key=lambda r: -r.mean()):
        kind = kinds[r.name]
        if kind in seen or not get_kind(kind, role="router").load_class().uses_embeddings:
            continue
        seen.add(kind)
        out.append(r)
    return out[:config.max_members]


def _cv_candidate(name: str, kind: str, cfg, folds: Folds, deadline: float, on_fold, skipped: dict) -> CVResult | None:
    """One candidate's CV on one fold assignment, or None (the reason in ``skipped``) when it fails on this data."""
    try:
        return cross_validate(name, kind, cfg, folds, deadline=deadline, on_fold=on_fold)
    except ConfigError:
        raise  # the user's settings: fix them, don't skip them
    except UserError as exc:
        skipped[name] = str(exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - one candidate failing on this data must not cost the
        # default router its other candidates (AutoML tools skip it too); the table and the warning
        # name it, so the failure is not silent
        reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        skipped[name] = reason
        print(f"routerzoo: warning: --router auto: candidate {name} {reason}; left out", file=sys.stderr)
    return None


def _cv_text(r: CVResult) -> str:
    g, sd = r.mean(), r.sd()
    gap = "-" if g is None else f"{100 * g:.1f}%" + ("" if sd is None else f" ± {100 * sd:.1f}")
    return f"CV gap closed {gap} ({r.folds_text()}, {sum(f.fit_s for f in r.folds):.1f} s)"


def table_rows(results: list[CVResult], skipped: dict[str, str]) -> list[dict]:
    rows = [{"candidate": r.name, "gap_closed_mean": r.mean(), "gap_closed_sd": r.sd(), "gap_closed_se": r.se(),
             "aiq_mean": r.mean("aiq"), "aiq_sd": r.sd("aiq"), "folds": len(r.folds), "repeats": r.repeats,
             "complete": r.complete,
             "fit_s": float(sum(f.fit_s for f in r.folds))} for r in results]
    rows += [{"candidate": name, "skipped": why} for name, why in skipped.items()]
    return rows


def format_table(rows: list[dict], chosen: str) -> str:
    width = max([32] + [len(r["candidate"]) for r in rows])  # an ensemble's name is long: keep the columns
    lines = [f"{'candidate':<{width + 2}} {'CV gap closed (mean ± sd)':<27} {'AIQ (mean ± sd)':<20} fit s"]
    for r in rows:
        mark = "*" if r["candidate"] == chosen else " "
        if "skipped" in r:
            lines.append(f"{mark} {r['candidate']:<{width}} skipped: {r['skipped']}")
            continue
        g, gs = r["gap_closed_mean"], r["gap_closed_sd"]
        a, as_ = r["aiq_mean"], r["aiq_sd"]
        gtxt = "-" if g is None else f"{100 * g:6.1f}%" + (f" ± {100 * gs:4.1f}" if gs is not None else "")
        atxt = "-" if a is None else f"{a:.4f}" + (f" ± {as_:.4f}" if as_ is not None else "")
        lines.append(f"{mark} {r['candidate']:<{width}} {gtxt:<27} {atxt:<20} {r['fit_s']:.1f}")
    return "\n".join(lines)


def fit_auto(config: AutoConfig, ctx: FitContext, folds_k: int, seed: int = 0, progress: bool | str | None = False):
    """Cross-validate the candidates, choose, refit. Returns (router, metrics, chosen CVResult, Folds, info)."""
    from routerzoo.routers.registry import get_kind

    if folds_k < 3:
        raise ConfigError("--router auto chooses by cross-validation: give --cv.folds 3 or more")
    parsed = {name: parse_candidate(name) for name in config.candidates}
    ctx.require_outcomes(AUTO)
    folds = Folds(ctx, folds_k, seed)
    if any(get_kind(k, role="router").load_class().uses_embeddings for k, _ in parsed.values()):
        folds.embeddings()  # encode once, with its own progress bar, before the fold bar starts
    # the budget is the search's: encoding is done once above whatever the budget, and a share is
    # kept for refitting the choice on the full train split
    start = time.monotonic()
    # ensemble selection (cross-fitted: K + 1 greedy searches) shares the rest with the refit
    deadline = start + (0.7 if config.method == "ensemble" else 0.8) * config.time_limit
    from routerzoo import progress as progress_
    from routerzoo.training.cv import RepeatedFolds, merge_repeats

    n_repeats = config.repeats or (SMALL_REPEATS if folds.n < REPEAT_BELOW else 1)
    assignments = [folds] + [Folds(ctx, folds_k, seed + r) for r in range(1, n_repeats)]
    shown = progress_.mode(progress)
    per_repeat = len(parsed) * folds_k
    bar = progress_.bar(per_repeat * n_repeats, "auto", "fold", shown)
    done: list[dict[str, CVResult]] = []  # per repeat: candidate -> its CV on that fold assignment
    skipped: dict[str, str] = {}
    slowest = 0.0  # seconds of the slowest fold run so far, of any candidate
    try:
        for rep, assignment in enumerate(assignments):
            this: dict[str, CVResult] = {}
            cut = False
            for index, (name, (kind, cfg)) in enumerate(parsed.items()):
                tick = rep * per_repeat + (index + 1) * folds_k
                if rep and (name not in done[0] or name in skipped):
                    bar.update(tick - bar.n)
                    continue
                # a candidate's first fold cannot be cut short: start none that the slowest fold so far
                # says would overrun (a proxy; the folds of a candidate are stopped once they would)
                if time.monotonic() + slowest >= deadline:
                    if rep:  # a later repeat every candidate cannot finish is dropped whole
                        cut = True
                        break
                    skipped[name] = "time limit"
                    bar.update(tick - bar.n)
                    continue
                label = f"{name}, repeat {rep + 1}/{n_repeats}" if n_repeats > 1 else name

                def on_fold(f, label=label):
                    bar.set_description(f"auto: {label} fold {f + 1}/{folds_k}")
                    if f:
                        bar.update(1)

                r = _cv_candidate(name, kind, cfg, assignment, deadline, on_fold, skipped)
                bar.update(tick - bar.n)
                if r is None:
                    continue
                if shown == "lines":  # in a log, each candidate's result as it comes
                    print(f"auto: {label}: {_cv_text(r)}", file=sys.stderr, flush=True)
                slowest = max([slowest] + [f.fit_s for f in r.folds])
                if not r.complete:
                    if rep:
                        cut = True
                        break
                    skipped[name] = f"time limit after {len(r.folds)} of {folds_k} folds"
                    continue
                this[name] = r
            if cut:
                break
            done.append(this)
    finally:
        bar.set_description("auto")
        bar.close()
    repeats_run = len(done)
    results = [merge_repeats([d[name] for d in done]) for name in done[0] if name not in skipped] if done else []
    folds_view = folds if repeats_run <= 1 else RepeatedFolds(assignments[:repeats_run])
    scored = [r for r in results if r.mean() is not None]
    if not scored:
        raise UserError(f"--router auto: no candidate finished its {folds_k} folds within --auto.time_limit "
                        f"{config.time_limit:g} s ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    chosen = one_se_choice(scored)
    method = "one-se"
    combined, weights, members = None, None, []
    kinds = {name: kind for name, (kind, _) in parsed.items()}
    best = max(scored, key=lambda r: r.mean())
    if config.method == "ensemble":
        members = [r for r in scored if _uses_embeddings(kinds[r.name])]
        if len(members) > 1:
            combined, weights = cross_fitted_ensemble(members, folds_view, config)
            keep = weights > 0
            members, weights = [r for r, w in zip(members, keep, strict=True) if w], weights[keep]
            combined.name = "ensemble(" + " + ".join(f"{w:.2f} {r.name}" for r, w in zip(members, weights, strict=True)) + ")"
            # kept unless clearly worse than the best single candidate: a combination of the
            # candidates is the robust choice, and one winner of noisy folds is not
            if combined.mean() is not None and combined.mean() >= best.mean() - (best.se() or 0.0):
                if len(members) == 1:
                    chosen, method = members[0], "ensemble"
                else:
                    chosen, method = combined, "ensemble"
        if method == "one-se":  # no ensemble: the best CV mean (the one-SE rule favours best-single on noisy data)
            chosen, method = best, "best-cv"
    elif config.method == "stack":
        members = _stack_members(scored, kinds, config)
        if len(members) > 1:
            combined, weights = cross_fitted_stack(members, folds_view, config)
            if combined.mean() is not None and combined.mean() > best.mean():
                chosen, method = combined, "stack"
    rows = table_rows(results + ([combined] if combined is not None else []), skipped)

    if shown == "lines":
        print(f"auto: refitting {chosen.name} on the train split", file=sys.stderr, flush=True)
    if method in ("stack", "ensemble") and chosen is combined:
        router, fit_metrics = _refit_stack(members, weights, parsed, ctx)
    else:
        kind, cfg = parsed[chosen.name]
        router, fit_metrics = get_kind(kind, role="router").load_fit()(cfg, ctx)
    info = {"method": method, "chosen": chosen.name, "folds": folds_k, "repeats": repeats_run,
            "repeats_planned": n_repeats, "time_limit": config.time_limit,
            "search_s": time.monotonic() - start, "candidates": rows}
    if chosen is combined:
        info["weights"] = {r.name: float(w) for r, w in zip(members, weights, strict=True)}
    metrics = {f"chosen.{k}": v for k, v in fit_metrics.items()}
    for r in rows:
        name = r["candidate"].split("(")[0] if combined is not None and r["candidate"] == combined.name else r["candidate"]
        key = name.replace(":", ".").replace("=", "").replace(",", ".").replace("(", "_").replace(")", "").replace("+", "_")
        if "skipped" not in r:
            metrics[f"auto.{key}.cv_gap_closed_mean"] = r["gap_closed_mean"]
            metrics[f"auto.{key}.cv_gap_closed_sd"] = r["gap_closed_sd"]
            metrics[f"auto.{key}.cv_aiq_mean"] = r["aiq_mean"]
    metrics["auto.search_s"] = info["search_s"]
    router.lineage = dict(router.lineage, auto=info)
    # the default policy and the lineage read one out-of-fold prediction per prompt: the first assignment's
    return router, metrics, chosen.first_repeat(), folds, info


def _refit_stack(members: list[CVResult], weights: np.ndarray, parsed: dict, ctx: FitContext):
    """Each stack member refit on the full train split; the weights from the out-of-fold predictions."""
    from routerzoo.routers.kinds.stack import StackConfig, StackRouter
    from routerzoo.routers.registry import get_kind

    fitted, metrics = [], {}
    for r in members:
        kind, cfg = parsed[r.name]
        member, m = get_kind(kind, role="router").load_fit()(cfg, ctx)
        fitted.append(member)
        metrics.update({f"{r.name}.{k}": v for k, v in m.items()})
    # one config per member: an ensemble may hold one kind twice (kNNs of two k)
    config = StackConfig(members=[m.kind for m in fitted], configs=[asdict(m.config) for m in fitted])
    router = StackRouter(config, **ctx.router_kwargs(encoder=True))
    router.set_members(fitted, weights)
    metrics.update({f"weight.{r.name}": float(w) for r, w in zip(members, weights, strict=True)})
    return router, metrics
