"""Unsupervised deferral from the answer's own token log-probabilities.

Varshney & Baral (2022) and Ramírez et al. (2024) find that a model's confidence in its own tokens
separates right from wrong answers well enough to drive a cascade with no training at all. The
statistic is configurable: the mean token logprob (geometric-mean probability), the minimum (the
least confident token), or the mean over the ``tail`` least confident tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.deferral.base import DeferralScorer

STATISTICS = ("mean", "min", "tail")


@dataclass
class LogprobConfidenceConfig:
    """Token-logprob confidence.

    Attributes:
        statistic: "mean" (exp of the mean logprob), "min" (probability of the least likely token)
            or "tail" (exp of the mean of the ``tail`` lowest logprobs).
        tail: tokens averaged by the "tail" statistic.
        missing: acceptance probability given to an answer without logprobs (0 escalates it).
    """

    statistic: str = "mean"
    tail: int = 5
    missing: float = 0.0

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise ConfigError(f"statistic must be one of {list(STATISTICS)}, got {self.statistic!r}")
        if self.tail < 1:
            raise ConfigError(f"tail must be >= 1, got {self.tail}")
        if not 0.0 <= self.missing <= 1.0:
            raise ConfigError(f"missing must be in [0, 1], got {self.missing}")


class LogprobConfidence(DeferralScorer):
    """exp(statistic of the response's token logprobs): a probability in [0, 1]."""

    kind = "logprob-confidence"
    Config = LogprobConfidenceConfig
    needs_logprobs = True

    def predict(self, prompts, responses, token_logprobs=None) -> np.ndarray:
        n = len(prompts)
        if len(responses) != n or (token_logprobs is not None and len(token_logprobs) != n):
            raise UserError(f"{n} prompts but {len(responses)} responses / logprob lists")
        out = np.full(n, float(self.config.missing))
        if token_logprobs is None:
            return out
        for i, lp in enumerate(token_logprobs):
            if lp is None or len(lp) == 0:
                continue
            lp = np.asarray(lp, dtype=np.float64)
            if self.config.statistic == "mean":
                value = lp.mean()
            elif self.config.statistic == "min":
                value = lp.min()
            else:
                value = np.sort(lp)[: self.config.tail].mean()
            out[i] = float(np.exp(min(value, 0.0)))
        return out
