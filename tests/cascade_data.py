"""A synthetic benchmark table for cascade tests: three models (small → mid → large, 10× dearer each)
answering prompts of hidden difficulty; a model is right when the prompt is easy enough for it, and
its token logprobs are higher when it is right, so logprob confidence separates right from wrong
answers (imperfectly: noise flips some)."""

from __future__ import annotations

import numpy as np
import pandas as pd

MODELS = ["small", "mid", "large"]
COST = {"small": 1e-4, "mid": 1e-3, "large": 1e-2}
SKILL = {"small": 0.4, "mid": 0.7, "large": 0.95}


def cascade_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """One row per (prompt, model) with quality, cost, response and token_logprobs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d = rng.uniform()
        topic = ["algebra", "history", "chemistry"][i % 3]
        for m in MODELS:
            right = d < SKILL[m] if rng.uniform() > 0.1 else d >= SKILL[m]
            conf = rng.uniform(0.6, 0.98) if right else rng.uniform(0.15, 0.75)
            lps = list(np.log(conf) + rng.normal(0, 0.05, 4).clip(-0.2, 0.0) - 0.0)
            lps = [min(v, 0.0) for v in lps]
            ans = "B" if right else "C"
            rows.append({"prompt_id": f"q{i}", "prompt": f"Question {i} about {topic}: level {d:.3f}?", "model": m,
                         "quality": float(right), "cost": COST[m] * (1 + 0.1 * (i % 5)), "category": topic,
                         "response": f"The answer is ({ans})", "token_logprobs": lps})
    return pd.DataFrame(rows)
