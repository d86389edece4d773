"""An LLM judge behind any OpenAI-compatible endpoint: labels for answers that have no reference.

Real traffic has no gold answers; RouteLLM labelled its arena data with an LLM judge, and so does
``routerzoo data generate --scorer judge``. Two modes:

``score``
    the judge rates one response against a rubric (MT-Bench's single-answer grading): it must end
    with ``Rating: [[N]]``, N in 1..``scale``; the label is ``(N - 1) / (scale - 1)`` in [0, 1].
``pairwise``
    the judge compares two responses to one question and ends with ``[[A]]``, ``[[B]]`` or
    ``[[C]]`` (a tie). Each pair is judged twice, once with the responses swapped (judges favour a
    position); two verdicts that disagree make a tie, counted in :attr:`PairVerdict.consistent`.

Requests go through :func:`routerzoo.data.generate.ask_all`, so the judge retries exactly as the
generator does (connection errors, timeouts, 429 / 5xx, bodies that are not completions) and stops
at once when the endpoint cannot be reached at all. Every judge answer is appended to a JSONL cache
(``cache``) keyed by the sha256 of the exact request (judge model, prompt, sampling settings), a
chunk at a time and synced to disk: a second run asks only what is missing, so an interrupted run
resumes where it stopped. A verdict that cannot be parsed (no ``[[N]]``) is a failure of that item,
never a guess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from routerzoo.data.generate import EndpointConfig, GenerateConfig
from routerzoo.errors import ConfigError, UserError

MODES = ("score", "pairwise")

SCORE_RUBRIC = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the "
    "user question displayed below. Consider helpfulness, relevance, accuracy, depth and level of detail.{reference_note} "
    "Begin your evaluation with a short explanation, be as objective as possible, then rate the response on a scale "
    "of 1 to {scale} by strictly following this format: \"Rating: [[N]]\".\n\n"
    "[Question]\n{question}\n\n{reference_block}[The Start of Assistant's Answer]\n{response}\n"
    "[The End of Assistant's Answer]"
)
PAIRWISE_RUBRIC = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the "
    "user question displayed below. Choose the assistant that follows the user's instructions and answers the "
    "question better. Do not let the order of the responses, their length or the assistants' names influence you. "
    "Begin with a short explanation, then output your final verdict by strictly following this format: \"[[A]]\" if "
    "assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.\n\n"
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{response_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{response_b}\n"
    "[The End of Assistant B's Answer]"
)
_RATING = (re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"), re.compile(r"[Rr]ating:\s*\[?\s*(\d+(?:\.\d+)?)"))
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


@dataclass
class JudgeConfig(EndpointConfig):
    """How to ask the judge: the judge's endpoint and model id and its sampling settings (the
    fields of :class:`~routerzoo.data.generate.EndpointConfig`; temperature 0, the default, is
    greedy, so a cached verdict is the verdict), and:

    Attributes:
        mode: ``score`` or ``pairwise``.
        rubric: the judge's prompt; empty = :data:`SCORE_RUBRIC` / :data:`PAIRWISE_RUBRIC`. A score
            rubric uses ``{question}``, ``{response}`` (required) and ``{reference}``, ``{scale}``;
            a pairwise rubric ``{question}``, ``{response_a}``, ``{response_b}``.
        scale: top of the rating scale (ratings are 1..scale).
        cache: JSONL file of judge answers (created if missing); empty = no cache.
    """

    mode: str = "score"
    rubric: str = ""
    scale: int = 10
    cache: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"judge mode must be one of {list(MODES)}, got {self.mode!r}")
        if not self.model:
            raise ConfigError("--judge-model must name the judge's model")
        if self.scale < 2:
            raise ConfigError(f"judge scale must be >= 2, got {self.scale}")
        if not self.rubric:
            self.rubric = SCORE_RUBRIC if self.mode == "score" else PAIRWISE_RUBRIC
        needed = ("{question}", "{response}") if self.mode == "score" else ("{question}", "{response_a}", "{response_b}")
        missing = [k for k in needed if k not in self.rubric]
        if missing:
            raise ConfigError(f"the judge rubric must contain {', '.join(missing)}")
        super().__post_init__()  # the endpoint and sampling settings, checked as the generator's are

    def generate_config(self) -> GenerateConfig:
        """The generator's config for the judge's requests (each request's text is the whole prompt)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(EndpointConfig)}
        return GenerateConfig(**shared, instruction="{prompt}")


@dataclass
class Verdict:
    """A score verdict: ``score`` in [0, 1], or ``error`` when the judge gave none."""

    id: str
    score: float | None = None
    rating: float | None = None
    error: str | None = None


@dataclass
class PairVerdict:
    """A pairwise verdict over both orders: ``winner`` a / b / tie, or ``error``."""

    id: str
    winner: str | None = None
    consistent: bool | None = None
    error: str | None = None


def parse_rating(text: str, scale: int) -> float | None:
    """The last ``[[N]]`` (else ``Rating: N``) in the judge's text, if it lies in 1..scale."""
    for pattern in _RATING:
        found = pattern.findall(text)
        if found:
            value = float(found[-1])
            return value if 1 <= value <= scale and math.isfinite(value) else None
    return None


def parse_verdict(text: str) -> str | None:
    """``a``, ``b`` or ``tie`` from the judge's last ``[[A]]`` / ``[[B]]`` / ``[[C]]``."""
    found = _VERDICT.findall(text)
    return {"A": "a", "B": "b", "C": "tie"}[found[-1]] if found else None


class Judge:
    """Ask an LLM judge, with an on-disk cache.

    Args:
        config: the judge's settings.
    """

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.asked = 0  # requests sent in this process (cache misses)

    # -- prompts ---------------------------------------------------------------------------------
    def score_prompt(self, question: str, response: str, reference: str | None = None) -> str:
        ref = reference or ""
        return self.config.rubric.format(
            question=question, response=response, scale=self.config.scale, reference=ref,
            reference_note=" Compare the response with the reference answer." if ref else "",
            reference_block=f"[Reference Answer]\n{ref}\n\n" if ref else "")

    def pair_prompt(self, question: str, response_a: str, response_b: str) -> str:
        return self.config.rubric.format(question=question, response_a=response_a, response_b=response_b)

    # -- public ----------------------------------------------------------------------------------
    def score(self, items: Sequence[tuple[str, str, str, str | None]], progress=None) -> list[Verdict]:
        """Rate responses.

        Args:
            items: ``(id, question, response, reference or None)`` per response.
            progress: ``progress(done, total, failed)`` after each judge answer.
        """
        if self.config.mode != "score":
            raise ConfigError("this judge compares pairs (mode pairwise); it does not score single responses")
        prompts = [self.score_prompt(q, r, ref) for _, q, r, ref in items]
        texts = self._ask(prompts, progress)
        out = []
        for (iid, *_), (text, err) in zip(items, texts, strict=True):
            if err is not None:
                out.append(Verdict(iid, error=err))
                continue
            rating = parse_rating(text, self.config.scale)
            if rating is None:
                out.append(Verdict(iid, error=f"the judge gave no rating [[1..{self.config.scale}]]: {text[-80:]!r}"))
            else:
                out.append(Verdict(iid, (rating - 1) / (self.config.scale - 1), rating))
        return out

    def compare(self, items: Sequence[tuple[str, str, str, str]], progress=None) -> list[PairVerdict]:
        """Compare two responses per item, in both orders.

        Args:
            items: ``(id, question, response_a, response_b)``.
        """
        if self.config.mode != "pairwise":
            raise ConfigError("this judge scores single responses (mode score); it does not compare pairs")
        prompts = []
        for _, q, a, b in items:
            prompts += [self.pair_prompt(q, a, b), self.pair_prompt(q, b, a)]
        texts = self._ask(prompts, progress)
        out = []
        swap = {"a": "b", "b": "a", "tie": "tie"}
        for k, (iid, *_) in enumerate(items):
            (t1, e1), (t2, e2) = texts[2 * k], texts[2 * k + 1]
            if e1 or e2:
                out.append(PairVerdict(iid, error=e1 or e2))
                continue
            v1, v2 = parse_verdict(t1), parse_verdict(t2)
            if v1 is None or v2 is None:
                bad = t1 if v1 is None else t2
                out.append(PairVerdict(iid, error=f"the judge gave no verdict [[A]] / [[B]] / [[C]]: {bad[-80:]!r}"))
                continue
            v2 = swap[v2]  # the second asking had the responses swapped
            out.append(PairVerdict(iid, v1 if v1 == v2 else "tie", v1 == v2))
        return out

    # -- asking, with the cache --------------------------------------------------------------------
    def _key(self, prompt: str) -> str:
        c = self.config
        blob = json.dumps([c.endpoint.rstrip("/"), c.model, c.max_tokens, c.temperature, prompt], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _ask(self, prompts: list[str], progress=None) -> list[tuple[str | None, str | None]]:
        """``(text, error)`` per prompt: from the cache, else from the judge (then cached)."""
        from routerzoo.data.fsutil import exclusive_lock

        keys = [self._key(p) for p in prompts]
        cache_path = Path(self.config.cache) if self.config.cache else None
        if cache_path is None:
            return self._ask_missing(prompts, keys, {}, None, progress)
        with exclusive_lock(cache_path):  # two runs appending to one cache would interleave lines
            cached = read_cache(cache_path)
            return self._ask_missing(prompts, keys, cached, cache_path, progress)

    def _ask_missing(self, prompts, keys, cached: dict, cache_path: Path | None, progress):
        from routerzoo.data.generate import Question, ask_all

        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        by_key = dict(zip(keys, prompts, strict=True))
        errors: dict[str, str] = {}
        config = self.config.generate_config()
        chunk = max(16, 4 * self.config.concurrency)
        done = failed = 0
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            answers = ask_all([Question(k, by_key[k], "") for k in part], config)
            self.asked += len(part)
            fresh = {}
            for a in answers:
                if a.error is None:
                    fresh[a.question.id] = a.response
                else:
                    errors[a.question.id] = f"judge request failed after {a.attempts} attempt(s): {a.error}"
                    failed += 1
            if cache_path is not None and fresh:
                _append(cache_path, fresh)
            cached.update(fresh)
            done += len(part)
            if progress:
                progress(done, len(todo), failed)
        return [(cached.get(k), None if k in cached else errors.get(k, "not judged")) for k in keys]


def read_cache(path: Path) -> dict[str, str]:
    """``key → judge answer`` from a cache file (a torn last line, from a killed run, is skipped)."""
    if not path.exists():
        return {}
    out = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"judge cache {path}: cannot read it ({exc}); move it away to start afresh") from None
    for line in lines:
        try:
            rec = json.loads(line)
            out[rec["key"]] = rec["text"]
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _append(path: Path, fresh: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    data = ("\n" if torn else "") + "".join(json.dumps({"key": k, "text": v}, ensure_ascii=False) + "\n" for k, v in fresh.items())
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # a resumed run finds every answer it was charged for


def score_answers(answers, config: JudgeConfig, progress=None) -> dict[str, float]:
    """Judge-rate the answered questions of :func:`routerzoo.data.generate.ask_all` (``--scorer judge``).

    The question's gold ``answer``, when given, is the rubric's reference. An answer the judge could
    not rate gets ``error`` set, so the generator reports it as a failure and leaves it out.

    Returns:
        question id → score in [0, 1].
    """
    good = [a for a in answers if a.error is None]
    verdicts = Judge(config).score([(a.question.id, a.question.prompt, a.response, a.question.answer or None)
                                    for a in good], progress)
    scores = {}
    for a, v in zip(good, verdicts, strict=True):
        if v.error is None:
            scores[a.question.id] = v.score
        else:
            a.error = f"judge: {v.error}"
    return scores
