"""Post-hoc deferral (Jitkrittum et al. 2024, "When does confidence-based cascade deferral suffice?").

Thresholding the current model's confidence is optimal only when the next model's errors do not
depend on the prompt in a way the current model's confidence misses. Jitkrittum et al. fix this
with a *post-hoc* rule: a small learned function of the current model's confidence features and
of the next model's predicted success on the prompt, trained to predict whether deferring helps.

Here: a logistic regression on the prompt embedding predicts P(next model right); a second one, on
[token-quantile features of the current answer, that prediction], predicts P(keeping the current
answer loses nothing), i.e. ``quality(current) >= quality(next)``, which the cascade thresholds as
its acceptance score. Without token logprobs the rule still learns from the next model's predicted
success (prompts the next model is likely to get wrong are not worth deferring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.logistic import fit_logistic, logistic_proba
from routerzoo.routers.deferral.base import LogisticScorer, check_l2
from routerzoo.routers.deferral.token_quantile import quantile_features
from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER
from routerzoo.routers.encoders.lazy import LazyEncoding


@dataclass
class PostHocDeferralConfig:
    """Post-hoc deferral rule for one cascade stage.

    Attributes:
        model: the stage's model, whose answers are scored.
        next_model: the model the cascade escalates to.
        quantiles: token-logprob quantile levels of the confidence features.
        l2: ridge penalty of both logistic regressions.
        encoder: sentence-transformers id or folder embedding prompts for the next model's success.
    """

    model: str = ""
    next_model: str = ""
    quantiles: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.5, 1.0])
    l2: float = 1.0
    encoder: str = DEFAULT_ENCODER

    def __post_init__(self):
        if self.model and self.model == self.next_model:
            raise ConfigError("model and next_model must differ")
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise ConfigError(f"quantiles must be levels in [0, 1], got {self.quantiles}")
        check_l2(self.l2)


class PostHocDeferral(LazyEncoding, LogisticScorer):
    """P(keeping this answer is at least as good as the next model's) from confidence + next-model success.

    State: ``next.*``, the next model's success on the prompt embedding, and ``rule.*``, the rule on
    [quantile features, that success].
    """

    kind = "posthoc-deferral"
    Config = PostHocDeferralConfig
    needs_logprobs = True
    heads = {"next_params": "next.", "rule_params": "rule."}

    @property
    def dim(self) -> int:
        """Width of the prompt embeddings the next model's regression reads (0 until fitted)."""
        return 0 if self.next_params is None else int(self.next_params["weight"].shape[0])

    def n_inputs(self, attr: str, tensors) -> int:
        # the rule reads the quantile features, the missing flag... and P(next right)
        return len(self.config.quantiles) + 4 if attr == "rule_params" else super().n_inputs(attr, tensors)

    def features(self, prompts, token_logprobs, emb: np.ndarray) -> np.ndarray:
        p_next = logistic_proba(self.next_params, emb)
        return np.hstack([quantile_features(token_logprobs, len(prompts), self.config.quantiles), p_next[:, None]])

    def predict(self, prompts, responses, token_logprobs=None) -> np.ndarray:
        if not self._check_batch(self.fitted, prompts, responses):
            return np.zeros(0)
        return logistic_proba(self.rule_params, self.features(prompts, token_logprobs, self.embed(prompts)))



def fit_posthoc_deferral(config: PostHocDeferralConfig, ctx):
    """Fit on ``ctx.train``: the next model's success on every prompt it answered, then the rule on
    the prompts both models answered. ``ctx.embed(prompts)`` gives embeddings (cached)."""
    m = ctx.train
    for role in ("model", "next_model"):
        name = getattr(config, role)
        if name not in m.models:
            raise UserError(f"posthoc-deferral: {role} {name!r} is not in the dataset; its models: {list(m.models)} "
                            f"(set --router.{role})")
    j, k = m.models.index(config.model), m.models.index(config.next_model)
    seen_k = np.flatnonzero(~np.isnan(m.quality[:, k]))
    both = np.flatnonzero(~np.isnan(m.quality[:, j]) & ~np.isnan(m.quality[:, k]))
    if both.size < 2:
        raise UserError(f"posthoc-deferral needs prompts answered by both {config.model!r} and {config.next_model!r}")
    emb = ctx.embed(list(m.prompts))
    scorer = PostHocDeferral(config)
    scorer.next_params = fit_logistic(emb[seen_k], m.quality[seen_k, k], config.l2)
    lps = [None if m.token_logprobs is None or m.token_logprobs[i, j] is None else np.asarray(m.token_logprobs[i, j])
           for i in both]
    feats = scorer.features([m.prompts[i] for i in both], lps, emb[both])
    keep = (m.quality[both, j] >= m.quality[both, k]).astype(np.float64)
    scorer.rule_params = fit_logistic(feats, keep, config.l2)
    return scorer, {"n_answers": int(both.size), "share_keep": float(keep.mean()),
                    "share_with_logprobs": sum(lp is not None for lp in lps) / both.size}
