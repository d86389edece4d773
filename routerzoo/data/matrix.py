"""Datasets pivoted to arrays, batch-first, for training and evaluation.

:class:`OutcomeMatrix` is the benchmark table as prompts × models arrays (NaN where a model has no
outcome); :class:`PreferenceMatrix` is the preference table as index arrays into a model list.
Pure numpy: routers and policies consume these without pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OutcomeMatrix:
    """Outcomes pivoted to arrays, prompts × models (batch-first).

    Attributes:
        prompt_ids: (n,) prompt ids.
        prompts: (n,) prompt texts.
        models: (m,) model names, the column order of the arrays.
        quality: (n, m) observed quality, NaN where the model has no outcome for the prompt.
        cost: (n, m) observed USD cost, NaN where missing.
        categories: (n,) category or None.
        responses: (n, m) object array of response texts (None where unknown), or None when the
            table has no responses at all.
        token_logprobs: (n, m) object array of per-token logprob arrays (None where unknown), or
            None when the table has none.
        input_tokens: (n, m) prompt tokens, NaN where unknown; None when the table has none.
        output_tokens: (n, m) completion tokens, NaN where unknown; None when the table has none.
    """

    prompt_ids: list[str]
    prompts: list[str]
    models: list[str]
    quality: np.ndarray
    cost: np.ndarray
    categories: list
    responses: np.ndarray | None = None
    token_logprobs: np.ndarray | None = None
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def observed(self) -> np.ndarray:
        """(n, m) bool: the model has an outcome for the prompt."""
        return ~np.isnan(self.quality)

    def complete(self) -> OutcomeMatrix:
        """Only the prompts that have an outcome for every model."""
        return self.subset(self.observed.all(axis=1))

    def subset(self, mask: np.ndarray) -> OutcomeMatrix:
        """Rows selected by a boolean mask or an index array."""
        mask = np.asarray(mask)
        idx = np.flatnonzero(mask) if mask.dtype == bool else mask.astype(int)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return OutcomeMatrix(
            [self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx], list(self.models),
            self.quality[idx], self.cost[idx], [self.categories[i] for i in idx],
            pick(self.responses), pick(self.token_logprobs), pick(self.input_tokens), pick(self.output_tokens),
        )

    def select_models(self, models: list[str]) -> OutcomeMatrix:
        """The same prompts with columns reordered / restricted to ``models`` (all must exist)."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise KeyError(f"no outcomes for model(s) {missing}")
        cols = [self.models.index(m) for m in models]
        pick = lambda a: None if a is None else a[:, cols]  # noqa: E731
        return OutcomeMatrix(
            list(self.prompt_ids), list(self.prompts), list(models), self.quality[:, cols], self.cost[:, cols],
            list(self.categories), pick(self.responses), pick(self.token_logprobs),
            pick(self.input_tokens), pick(self.output_tokens),
        )


@dataclass
class PreferenceMatrix:
    """Preference pairs as arrays (one row per comparison).

    Attributes:
        prompt_ids: (n,) prompt id of each comparison.
        prompts: (n,) prompt texts.
        models: model names; ``a`` and ``b`` index into it.
        a: (n,) int index of model A.
        b: (n,) int index of model B.
        outcome: (n,) float: 1 if A won, 0 if B won, 0.5 for a tie.
        weight: (n,) positive comparison weights.
    """

    prompt_ids: list[str]
    prompts: list[str]
    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(self, mask: np.ndarray) -> PreferenceMatrix:
        idx = np.flatnonzero(np.asarray(mask))
        return PreferenceMatrix(
            [self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx], list(self.models),
            self.a[idx], self.b[idx], self.outcome[idx], self.weight[idx],
        )

    @classmethod
    def from_outcomes(cls, matrix: OutcomeMatrix) -> PreferenceMatrix:
        """Pairs derived from a benchmark table: for each prompt, every two models with outcomes
        whose qualities differ (the better one wins); equal qualities are ties.

        Ties carry weight 0.5: most benchmark pairs tie (both right or both wrong), and at full
        weight they would swamp the informative comparisons.
        """
        m = len(matrix.models)
        ia, ib = np.triu_indices(m, k=1)
        q = matrix.quality
        both = ~np.isnan(q[:, ia]) & ~np.isnan(q[:, ib])  # (n, P)
        rows, pair = np.nonzero(both)
        qa, qb = q[rows, ia[pair]], q[rows, ib[pair]]
        outcome = np.where(qa > qb, 1.0, np.where(qa < qb, 0.0, 0.5))
        weight = np.where(outcome == 0.5, 0.5, 1.0)
        return cls(
            [matrix.prompt_ids[i] for i in rows], [matrix.prompts[i] for i in rows], list(matrix.models),
            ia[pair].astype(np.int64), ib[pair].astype(np.int64), outcome, weight,
        )
