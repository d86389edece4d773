"""Learned deferral from token-logprob quantiles (Gupta et al. 2024, "Language model cascades:
token-level uncertainty and beyond").

The mean or minimum token logprob throws away most of what the per-token uncertainties say; Gupta
et al. find that a small classifier on their *quantiles* (plus the answer's length) predicts
correctness markedly better, and carries over to deferral. Features of one answer with token
logprobs ``lp`` (t tokens): ``quantile(lp, q)`` for each configured q, ``mean(lp)`` and
``log(1 + t)``; an answer without logprobs gets all-zero features and a "missing" flag, so a table
mixing both still trains. A logistic regression maps them to P(answer is right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.logistic import fit_logistic, logistic_proba
from routerzoo.routers.deferral.base import LogisticScorer, check_l2


@dataclass
class TokenQuantileConfig:
    """Token-quantile deferral scorer.

    Attributes:
        quantiles: quantile levels in [0, 1] of the token logprobs used as features.
        l2: ridge penalty of the logistic regression.
        model: train on this model's answers only (the cascade stage it will score); empty = every
            model's answers in the table.
    """

    quantiles: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    l2: float = 1.0
    model: str = ""

    def __post_init__(self):
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise ConfigError(f"quantiles must be a non-empty list of levels in [0, 1], got {self.quantiles}")
        check_l2(self.l2)


def quantile_features(token_logprobs: Sequence[np.ndarray | None] | None, n: int, quantiles: Sequence[float]) -> np.ndarray:
    """(n, len(quantiles) + 3) features: quantiles, mean, log(1 + tokens), missing flag."""
    q = np.asarray(quantiles, dtype=np.float64)
    out = np.zeros((n, q.size + 3))
    out[:, -1] = 1.0
    if token_logprobs is None:
        return out
    if len(token_logprobs) != n:
        raise UserError(f"{n} answers but {len(token_logprobs)} logprob lists")
    for i, lp in enumerate(token_logprobs):
        if lp is None or len(lp) == 0:
            continue
        lp = np.minimum(np.asarray(lp, dtype=np.float64), 0.0)
        out[i, : q.size] = np.quantile(lp, q)
        out[i, q.size] = lp.mean()
        out[i, q.size + 1] = np.log1p(lp.size)
        out[i, -1] = 0.0
    return out


def answers_for_training(matrix, model: str = ""):
    """Every recorded answer of ``model`` (all models when empty) in a benchmark table.

    Returns:
        (rows, cols, prompts, responses, token_logprobs, quality): index arrays into the matrix and
        lists / a (k,) float array, one entry per recorded answer.
    """
    cols = range(len(matrix.models)) if not model else [matrix.models.index(model)] if model in matrix.models else None
    if cols is None:
        raise UserError(f"model {model!r} is not in the dataset; its models: {list(matrix.models)}")
    rows_out, cols_out = [], []
    for j in cols:
        r = np.flatnonzero(~np.isnan(matrix.quality[:, j]))
        rows_out.append(r)
        cols_out.append(np.full(r.size, j))
    rows = np.concatenate(rows_out) if rows_out else np.zeros(0, dtype=int)
    cols_a = np.concatenate(cols_out) if cols_out else np.zeros(0, dtype=int)
    prompts = [matrix.prompts[i] for i in rows]
    responses = [None if matrix.responses is None else matrix.responses[i, j] for i, j in zip(rows, cols_a, strict=True)]
    lps = [None if matrix.token_logprobs is None or matrix.token_logprobs[i, j] is None
           else np.asarray(matrix.token_logprobs[i, j], dtype=np.float64) for i, j in zip(rows, cols_a, strict=True)]
    return rows, cols_a, prompts, responses, lps, matrix.quality[rows, cols_a].astype(np.float64)


class TokenQuantileScorer(LogisticScorer):
    """P(answer right) from a logistic regression on token-logprob quantile features."""

    kind = "token-quantile"
    Config = TokenQuantileConfig
    needs_logprobs = True

    def n_inputs(self, attr: str, tensors) -> int:
        return len(self.config.quantiles) + 3  # quantile_features' width

    def predict(self, prompts, responses, token_logprobs=None) -> np.ndarray:
        n = self._check_batch(self.fitted, prompts, responses)
        return logistic_proba(self.params, quantile_features(token_logprobs, n, self.config.quantiles))



def fit_token_quantile(config: TokenQuantileConfig, ctx):
    """Fit on the training split's answers (``ctx.train``); metrics: answers used, share with logprobs."""
    _, _, _, _, lps, y = answers_for_training(ctx.train, config.model)
    have = sum(lp is not None for lp in lps)
    if have == 0:
        raise UserError("token-quantile needs token logprobs and the training split has none "
                        "(generate them with `routerzoo data generate`, or use a response-based scorer)")
    scorer = TokenQuantileScorer(config)
    scorer.params = fit_logistic(quantile_features(lps, len(lps), config.quantiles), y, config.l2)
    return scorer, {"n_answers": len(lps), "share_with_logprobs": have / len(lps)}
