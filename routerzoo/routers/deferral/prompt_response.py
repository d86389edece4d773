"""A learned (prompt, response) deferral scorer in the spirit of FrugalGPT (Chen et al. 2023).

FrugalGPT scores an answer with a small encoder reading the query and the answer together,
trained to predict whether the answer is right. This kind reads no logprobs, so it works on tables
that only have response text (MMLU-Pro's 15 models, RouteLLM GSM8K, RouterArena): the text
"prompt \\n\\n answer: response" (the response's last ``tail_chars`` characters, where chain-of-
thought answers state their conclusion) is embedded by a *frozen* sentence encoder (MiniLM by
default) and a logistic regression on [that embedding, the prompt's embedding] predicts
correctness. Not fine-tuned end to end as in FrugalGPT: the frozen encoder keeps training to
seconds on CPU; a fine-tuned encoder is the natural upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.logistic import fit_logistic, logistic_proba
from routerzoo.routers.deferral.base import LogisticScorer, check_l2
from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER
from routerzoo.routers.encoders.lazy import LazyEncoding


@dataclass
class PromptResponseConfig:
    """Frozen-encoder (prompt, response) correctness classifier.

    Attributes:
        encoder: sentence-transformers id or folder.
        tail_chars: characters of the response kept, from its end (its conclusion).
        head_chars: characters of the prompt kept, from its start.
        l2: ridge penalty of the logistic regression.
        model: train on this model's answers only; empty = every model's.
    """

    encoder: str = DEFAULT_ENCODER
    tail_chars: int = 600
    head_chars: int = 600
    l2: float = 10.0
    model: str = ""

    def __post_init__(self):
        if self.tail_chars < 1 or self.head_chars < 1:
            raise ConfigError("tail_chars and head_chars must be >= 1")
        check_l2(self.l2)


class PromptResponseScorer(LazyEncoding, LogisticScorer):
    """P(answer right) from frozen embeddings of the prompt and of (prompt, response)."""

    kind = "prompt-response"
    Config = PromptResponseConfig
    needs_logprobs = False

    def features(self, prompts, responses, embed=None) -> np.ndarray:
        embed = embed or self.embed
        c = self.config
        pairs = [f"{p[:c.head_chars]}\n\nanswer: {(r or '')[-c.tail_chars:]}" for p, r in zip(prompts, responses, strict=True)]
        return np.hstack([embed(pairs), embed([p[:c.head_chars] for p in prompts])])

    def predict(self, prompts, responses, token_logprobs=None) -> np.ndarray:
        if not self._check_batch(self.fitted, prompts, responses):
            return np.zeros(0)
        return logistic_proba(self.params, self.features(list(prompts), list(responses)))



def fit_prompt_response(config: PromptResponseConfig, ctx):
    """Fit on the training split's answers with a response (``ctx.embed`` caches embeddings on disk)."""
    from routerzoo.routers.deferral.token_quantile import answers_for_training

    _, _, prompts, responses, _, y = answers_for_training(ctx.train, config.model)
    keep = [i for i, r in enumerate(responses) if isinstance(r, str) and r]
    if len(keep) < 2:
        raise UserError("prompt-response needs answers with response text in the train split")
    scorer = PromptResponseScorer(config)
    x = scorer.features([prompts[i] for i in keep], [responses[i] for i in keep], embed=ctx.embed)
    scorer.params = fit_logistic(x, y[keep], config.l2)
    return scorer, {"n_answers": len(keep)}
