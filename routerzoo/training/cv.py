"""K-fold cross-validation of a router kind on a dataset's train+val prompts (test is never read).

Why: one validation split of a few dozen prompts picks hyper-parameters and kinds that lose on test
(kNN picked k=10 on a 32-prompt split: 57% gap closed on validation, 0.3% on test). K folds give
every train+val prompt one out-of-fold prediction, so the estimate uses all the data and comes with
an error bar.

Folds are grouped and stratified as :mod:`routerzoo.data.splits` does for the dataset split:
prompts with the same normalised text form one group, groups are ranked by a seeded hash within
their category and dealt round-robin, so every category is spread evenly over the folds and a
duplicated question never sits on both sides. Fold ``f`` is held out; fold ``f+1`` is the inner
validation split the kind's own fit uses for early stopping or model selection; the rest trains it.

Embeddings are computed once for all train+val prompts (through the parent
:class:`~routerzoo.training.context.FitContext`, which caches them) and sliced per fold.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from routerzoo.data.matrix import OutcomeMatrix
from routerzoo.data.text import normalise_text
from routerzoo.errors import ConfigError, UserError
from routerzoo.training.context import FitContext

#: Under this many train+val prompts the CV summary states how wide its error bars are.
SMALL_DATA = 300


@dataclass
class CVConfig:
    """K-fold cross-validation on train+val (test is never used).

    Attributes:
        folds: number of folds K; 0 disables cross-validation.
        seed: seed of the fold assignment (folds are deterministic for a seed).
        default_policy: the router's default policy, chosen on the out-of-fold predictions:
            "match-best" (the cheapest cost weight λ whose routed quality reaches the best single
            model's) or "none" (λ = 0: the best predicted quality at any price).
    """

    folds: int = 5
    seed: int = 0
    default_policy: str = "match-best"

    def __post_init__(self):
        if self.default_policy not in ("match-best", "none"):
            raise ConfigError(f"--cv.default_policy must be 'match-best' or 'none', got {self.default_policy!r}")
        if self.folds < 0 or self.folds == 1 or self.folds == 2:
            raise ConfigError(f"--cv.folds must be 0 (off) or at least 3, got {self.folds} "
                              "(each fold needs a held-out part, an inner validation part and a training part)")


@dataclass
class FoldResult:
    """One held-out fold's scores."""

    fold: int
    n_prompts: int
    gap_closed: float | None
    aiq: float | None
    fit_s: float


@dataclass
class CVResult:
    """Out-of-fold predictions and per-fold scores of one candidate.

    Attributes:
        name: the candidate's label (a kind, or ``kind:key=value``).
        folds: per held-out fold scores.
        oof_quality: (n, m) out-of-fold predicted quality of every train+val prompt (NaN where its
            fold was not run).
        oof_cost: (n, m) out-of-fold predicted cost.
        complete: False when the time budget stopped it before every fold ran.
        repeats: how many fold assignments ``folds`` holds (repeated K-fold: R × K fold scores);
            the out-of-fold arrays are then (R·n, m), repeat r's rows at ``r·n:(r+1)·n``.
    """

    name: str
    folds: list[FoldResult]
    oof_quality: np.ndarray
    oof_cost: np.ndarray
    complete: bool = True
    notes: list[str] = field(default_factory=list)
    repeats: int = 1

    def _values(self, key: str) -> np.ndarray:
        vals = [getattr(f, key) for f in self.folds]
        return np.array([v for v in vals if v is not None and math.isfinite(v)], dtype=np.float64)

    def mean(self, key: str = "gap_closed") -> float | None:
        v = self._values(key)
        return float(v.mean()) if v.size else None

    def sd(self, key: str = "gap_closed") -> float | None:
        v = self._values(key)
        return float(v.std(ddof=1)) if v.size > 1 else None

    def se(self, key: str = "gap_closed") -> float | None:
        """Standard error of the fold mean (sd / √K).

        Repeated K-fold reuses every prompt R times, so its R·K fold scores are not independent: the
        error is taken as sd / √K (the scores of one repeat's K folds), not sd / √(R·K), which would
        claim an accuracy the data cannot give.
        """
        sd = self.sd(key)
        return None if sd is None else sd / math.sqrt(max(1.0, len(self._values(key)) / self.repeats))

    def first_repeat(self) -> CVResult:
        """This result with the out-of-fold predictions of the first fold assignment only (n rows),
        every fold score kept: what needs one prediction per prompt (the default policy) reads this."""
        if self.repeats == 1:
            return self
        n = len(self.oof_quality) // self.repeats
        return CVResult(self.name, self.folds, self.oof_quality[:n], self.oof_cost[:n], self.complete,
                        list(self.notes), self.repeats)

    def folds_text(self) -> str:
        k = len(self.folds) // self.repeats
        return f"{self.repeats}×{k} folds" if self.repeats > 1 else f"{len(self.folds)} folds"

    def summary(self) -> dict:
        """Flat numbers for MLflow metrics and the artifact's lineage."""
        out: dict = {"cv_folds": len(self.folds), "cv_complete": self.complete, "cv_repeats": self.repeats}
        for key in ("gap_closed", "aiq"):
            out[f"cv_{key}_mean"] = self.mean(key)
            out[f"cv_{key}_sd"] = self.sd(key)
        out["cv_fit_s"] = float(sum(f.fit_s for f in self.folds))
        return out


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"cv:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_folds(prompts: list[str], categories: list, k: int, seed: int = 0) -> np.ndarray:
    """(n,) fold index per prompt: grouped by normalised text, stratified by category.

    Groups are ranked within their category by a seeded hash and dealt round-robin, so each
    category's groups are spread over the folds as evenly as they can be, and equal texts share a fold.
    """
    norm = [normalise_text(p) for p in prompts]
    group_cat: dict[str, str] = {}
    for text, cat in zip(norm, categories, strict=True):
        group_cat.setdefault(text, "" if cat is None else str(cat))
    by_cat: dict[str, list[str]] = {}
    for text, cat in group_cat.items():
        by_cat.setdefault(cat, []).append(text)
    fold_of: dict[str, int] = {}
    offset = 0
    for cat in sorted(by_cat):
        ranked = sorted(by_cat[cat], key=lambda t: (_unit_hash(t, seed), t))
        for i, text in enumerate(ranked):
            # the offset carries over between categories so small categories do not all start at fold 0
            fold_of[text] = (offset + i) % k
        offset += len(ranked)
    return np.array([fold_of[t] for t in norm], dtype=np.int64)


def pooled_outcomes(ctx: FitContext) -> OutcomeMatrix:
    """Train and val outcomes as one matrix (train rows first)."""
    parts = [m for m in (ctx.train, ctx.val) if m is not None and len(m)]
    if not parts:
        raise UserError("cross-validation needs benchmark outcomes in the train or val split")
    if len(parts) == 1:
        return parts[0]
    a, b = parts

    def cat(x, y):
        return None if x is None or y is None else np.concatenate([x, y])

    return OutcomeMatrix(a.prompt_ids + b.prompt_ids, a.prompts + b.prompts, list(a.models),
                         np.concatenate([a.quality, b.quality]), np.concatenate([a.cost, b.cost]),
                         list(a.categories) + list(b.categories), cat(a.responses, b.responses),
                         cat(a.token_logprobs, b.token_logprobs), cat(a.input_tokens, b.input_tokens),
                         cat(a.output_tokens, b.output_tokens))


class Folds:
    """The train+val prompts of a fit context split into K grouped, stratified folds.

    Builds one :class:`FitContext` per fold that shares the parent's encoder and sliced embeddings,
    so no prompt is encoded twice.
    """

    def __init__(self, ctx: FitContext, k: int, seed: int = 0):
        self.ctx = ctx
        self.k = k
        self.data = pooled_outcomes(ctx)
        self.fold = assign_folds(self.data.prompts, self.data.categories, k, seed)
        self._emb: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.data)

    def embeddings(self) -> np.ndarray:
        """(n, d) embeddings of the pooled prompts, from the parent context's cache."""
        if self._emb is None:
            parts = [self.ctx.train_embeddings] if self.ctx.train is not None and len(self.ctx.train) else []
            if self.ctx.val is not None and len(self.ctx.val):
                parts.append(self.ctx.val_embeddings)
            self._emb = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._emb

    def context(self, f: int, uses_embeddings: bool) -> tuple[FitContext, np.ndarray]:
        """The fit context of fold ``f`` (held out) and the held-out row indices."""
        test = np.flatnonzero(self.fold == f)
        val = np.flatnonzero(self.fold == (f + 1) % self.k)
        train = np.flatnonzero((self.fold != f) & (self.fold != (f + 1) % self.k))
        parent = self.ctx
        ctx = FitContext(models=parent.models, train=self.data.subset(train), val=self.data.subset(val),
                         features=parent.features, prices=parent.prices, lineage=dict(parent.lineage),
                         seed=parent.seed, logger=None, progress=False, encoder=parent.encoder, trainer=parent.trainer)
        if uses_embeddings:
            emb = self.embeddings()
            ctx.encoder = parent.encoder
            ctx._embeddings.update(train=emb[train], val=emb[val])
        return ctx, test

    def predict(self, router, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(rows), m) predicted quality and cost of pooled prompts ``rows``."""
        if router.encoder is not None and getattr(router, "uses_embeddings", False):
            # the texts too: a router may read more than the embedding (prompt-length features)
            pred = router.predict_embeddings(self.embeddings()[rows], [self.data.prompts[i] for i in rows])
        else:
            pred = router.predict([self.data.prompts[i] for i in rows])
        return np.asarray(pred.quality, dtype=np.float64), np.asarray(pred.cost, dtype=np.float64)


def score(pq: np.ndarray, pc: np.ndarray, tq: np.ndarray, tc: np.ndarray, models: list[str]) -> tuple[float | None, float | None]:
    """(gap closed, AIQ) of predictions on the prompts where every model has an outcome."""
    from routerzoo.evaluation.report import evaluate_predictions

    ok = ~np.isnan(tq).any(axis=1) & np.isfinite(pq).all(axis=1) & np.isfinite(pc).all(axis=1)
    if ok.sum() < 2:
        return None, None
    report = evaluate_predictions(pq[ok], pc[ok], tq[ok], np.nan_to_num(tc[ok], nan=0.0), models)
    return report["gap_closed"], report["aiq"]["router"]


def cross_validate(name: str, kind: str, config, folds: Folds, *, deadline: float | None = None,
                   on_fold=None) -> CVResult:
    """Fit ``kind`` with ``config`` on each fold's training part and score its held-out part.

    Args:
        name: the label reported for this candidate.
        kind: a registered router kind.
        config: the kind's typed config.
        folds: the fold split (and shared embeddings).
        deadline: ``time.monotonic()`` value by which every fold must be done: once the folds left
            (at the mean duration of those run) would end after it, no further fold starts and the
            result is marked incomplete.
        on_fold: called as ``on_fold(fold_index)`` before each fold (progress bars).
    """
    from routerzoo.routers.registry import get_kind

    spec = get_kind(kind, role="router")
    fit = spec.load_fit()
    uses_embeddings = spec.load_class().uses_embeddings
    data, m = folds.data, len(folds.data.models)
    oq, oc = np.full((folds.n, m), np.nan), np.full((folds.n, m), np.nan)
    results: list[FoldResult] = []
    complete = True
    for f in range(folds.k):
        if deadline is not None and results:
            # stop as soon as the folds left would not fit: a half-finished candidate is wasted time
            per_fold = sum(r.fit_s for r in results) / len(results)
            if time.monotonic() + per_fold * (folds.k - len(results)) > deadline:
                complete = False
                break
        if on_fold is not None:
            on_fold(f)
        ctx, test = folds.context(f, uses_embeddings)
        t0 = time.perf_counter()
        router, _ = fit(config, ctx)
        q, c = folds.predict(router, test)
        fit_s = time.perf_counter() - t0
        oq[test], oc[test] = q, c
        gap, aiq = score(q, c, data.quality[test], data.cost[test], data.models)
        results.append(FoldResult(f, int(len(test)), gap, aiq, fit_s))
    return CVResult(name, results, oq, oc, complete)


def merge_repeats(results: list[CVResult]) -> CVResult:
    """One result of repeated K-fold from one result per fold assignment (each over the same prompts).

    Fold scores are pooled (fold ids ``r·K + f``) and the out-of-fold predictions stacked, repeat r's
    rows at ``r·n:(r+1)·n`` (:class:`RepeatedFolds` is the matching view of the outcomes).
    """
    if len(results) == 1:
        return results[0]
    k = max(len(r.folds) for r in results)
    folds = [FoldResult(r_i * k + f.fold, f.n_prompts, f.gap_closed, f.aiq, f.fit_s)
             for r_i, r in enumerate(results) for f in r.folds]
    return CVResult(results[0].name, folds, np.concatenate([r.oof_quality for r in results]),
                    np.concatenate([r.oof_cost for r in results]), all(r.complete for r in results),
                    [n for r in results for n in r.notes], len(results))


class RepeatedFolds:
    """R fold assignments of the same prompts seen as one (R·n)-row split, for combining repeated-CV
    out-of-fold predictions (:func:`merge_repeats`): ``data`` holds the outcomes stacked R times,
    ``fold`` the global fold id ``r·K + f`` and ``repeat`` the assignment of each row."""

    def __init__(self, folds: list[Folds]):
        first = folds[0]
        self.k_per_repeat, self.repeats = first.k, len(folds)
        self.k = first.k * len(folds)
        self.n = first.n
        d = first.data
        self.data = SimpleNamespace(quality=np.concatenate([d.quality] * len(folds)),
                                    cost=np.concatenate([d.cost] * len(folds)), models=d.models)
        self.fold = np.concatenate([r * first.k + f.fold for r, f in enumerate(folds)])
        self.repeat = np.repeat(np.arange(len(folds)), first.n)


def error_bar_note(result: CVResult, n_prompts: int) -> str | None:
    """A sentence on how wide the CV error bars are, for data under :data:`SMALL_DATA` prompts."""
    if n_prompts >= SMALL_DATA:
        return None
    sd, se = result.sd(), result.se()
    if sd is None:
        return f"only {n_prompts} train+val prompts: too few folds ran to give an error bar"
    half = 1.96 * se
    return (f"only {n_prompts} train+val prompts: the CV gap closed is uncertain by about ±{100 * half:.1f} points "
            f"(95%, fold sd {100 * sd:.1f} over {result.folds_text()}); differences smaller than that are noise")


def format_cv(result: CVResult) -> str:
    """One line: ``name: gap closed 23.1% ± 2.0 (sd over 5 folds), AIQ 0.6120 ± 0.0031``."""
    def pm(key: str, pct: bool) -> str:
        mean, sd = result.mean(key), result.sd(key)
        if mean is None:
            return "-"
        if pct:
            return f"{100 * mean:.1f}%" + (f" ± {100 * sd:.1f}" if sd is not None else "")
        return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")

    tail = "" if result.complete else " (stopped by the time limit)"
    return (f"{result.name}: CV gap closed {pm('gap_closed', True)}, AIQ {pm('aiq', False)} "
            f"(mean ± sd over {result.folds_text()}){tail}")


def run_cv(kind: str, config, ctx: FitContext, cv: CVConfig, progress: bool | str | None) -> tuple[CVResult, Folds]:
    """Cross-validate one kind with a progress bar over its folds (``routerzoo train``)."""
    folds = Folds(ctx, cv.folds, cv.seed)
    from routerzoo.routers.registry import get_kind

    if get_kind(kind, role="router").load_class().uses_embeddings:
        folds.embeddings()  # already cached by the fit: slicing, not encoding
    from routerzoo import progress as progress_

    bar = progress_.bar(cv.folds, f"CV {kind}", "fold", progress)

    def on_fold(f: int) -> None:
        bar.set_description(f"CV {kind} fold {f + 1}/{cv.folds}")
        bar.update(f - bar.n)

    try:
        result = cross_validate(kind, kind, config, folds, on_fold=on_fold)
    finally:
        bar.update(cv.folds - bar.n)
        bar.set_description(f"CV {kind}")
        bar.close()
    return result, folds


def lineage_entry(result: CVResult, folds: Folds, cv: CVConfig) -> dict:
    """What the artifact's lineage records of a CV run."""
    return {**result.summary(), "seed": cv.seed, "n_prompts": folds.n, "candidate": result.name,
            "per_fold": [{"fold": f.fold, "n_prompts": f.n_prompts, "gap_closed": f.gap_closed, "aiq": f.aiq}
                         for f in result.folds],
            "note": error_bar_note(result, folds.n)}
