"""Answer consistency (Yue et al. 2024, "Large language model cascades with mixture of thoughts
representations"; Wang et al.'s self-consistency): sample the cheap model k times; if its answers
agree, the answer is probably right, and the cascade stops there.

The scorer reads, per prompt, a *list* of sampled responses (the first is the answer the cascade
would return) and gives the share of the other samples whose extracted answer equals the first
one's. Answers are compared after extraction: a multiple-choice letter ("the answer is (C)"), else
the last number, else the lower-cased text without punctuation. With a single response there is
nothing to compare: the score is ``single``. In the server, stages scored by this kind are asked
for ``n = samples`` completions at ``temperature``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.deferral.base import DeferralScorer

EXTRACTORS = ("auto", "choice", "number", "text")
_CHOICE = re.compile(r"answer is:?\s*\(?([A-J])\)?(?![A-Za-z])", re.IGNORECASE)
_LONE_CHOICE = re.compile(r"^\s*\(?([A-J])\)?[\s.:)]*$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class ConsistencyConfig:
    """Agreement among k sampled answers.

    Attributes:
        samples: completions requested per scored stage in the server (``n``), >= 2.
        temperature: sampling temperature of those requests (agreement at 0 means nothing).
        extract: how answers are compared: auto (choice letter, else last number, else text),
            choice, number or text.
        single: score of a prompt with fewer than two samples.
    """

    samples: int = 5
    temperature: float = 0.7
    extract: str = "auto"
    single: float = 0.0

    def __post_init__(self):
        if self.samples < 2:
            raise ConfigError(f"samples must be >= 2, got {self.samples}")
        if not 0.0 < self.temperature <= 2.0:
            raise ConfigError(f"temperature must be in (0, 2], got {self.temperature}")
        if self.extract not in EXTRACTORS:
            raise ConfigError(f"extract must be one of {list(EXTRACTORS)}, got {self.extract!r}")
        if not 0.0 <= self.single <= 1.0:
            raise ConfigError(f"single must be in [0, 1], got {self.single}")


def extract(text: str | None, how: str = "auto") -> str | None:
    """The comparable answer in ``text`` (None when there is none)."""
    if not isinstance(text, str) or not text.strip():
        return None
    if how in ("auto", "choice"):
        m = _CHOICE.search(text) or _LONE_CHOICE.match(text)
        if m:
            return m.group(1).upper()
        if how == "choice":
            return None
    if how in ("auto", "number"):
        nums = _NUMBER.findall(text)
        if nums:
            return nums[-1].replace(",", "").rstrip(".")
        if how == "number":
            return None
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split()) or None


class ConsistencyScorer(DeferralScorer):
    """Share of the other samples agreeing with the first (unsupervised)."""

    kind = "consistency"
    Config = ConsistencyConfig
    needs_logprobs = False

    @property
    def samples(self) -> int:
        """Completions the server asks for per scored stage."""
        return self.config.samples

    def predict(self, prompts, responses, token_logprobs=None) -> np.ndarray:
        """Args: ``responses[i]``: a list of sampled texts (the first is the answer), or one text."""
        n = len(prompts)
        if len(responses) != n:
            raise UserError(f"{n} prompts but {len(responses)} responses")
        out = np.full(n, float(self.config.single))
        for i, r in enumerate(responses):
            if not isinstance(r, (list, tuple)) or len(r) < 2:
                continue
            answers = [extract(t, self.config.extract) for t in r]
            if answers[0] is None:
                out[i] = 0.0
                continue
            out[i] = sum(a == answers[0] for a in answers[1:]) / (len(answers) - 1)
        return out
