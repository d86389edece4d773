"""Shared fixtures: a small synthetic routing dataset with a real signal, and paths to shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each worker (and the servers and CLIs it starts) keeps to
    # one intra-op thread, or the workers' thread pools fight over the same cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]

#: How far predictions may move when a router encodes a text afresh instead of reading the embedding
#: cache: float32 encoder outputs differ by ~1e-7 between batch compositions (padding) and CPUs.
#: Tests compare such values within this, decisions exactly, and weights to the bit.
ENCODER_ATOL = 1e-5

# CI explores the same examples every run (a new find must not block an unrelated change);
# locally hypothesis explores fresh ones each time: run `pytest tests/test_artifacts.py` to hunt
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass


def shared_data() -> Path:
    """``$ROUTERZOO_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("ROUTERZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(tmp_path_factory):
    """One embedding cache per test session, never the user's own."""
    path = tmp_path_factory.mktemp("rz-cache")
    old = os.environ.get("ROUTERZOO_CACHE")
    os.environ["ROUTERZOO_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ROUTERZOO_CACHE", None)
    else:
        os.environ["ROUTERZOO_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _isolated_workdir(tmp_path_factory):
    """Run the session in a scratch directory with its own MLflow store, so no test writes
    ``mlflow.db`` or ``mlruns/`` into the repository or the user's working directory."""
    work = tmp_path_factory.mktemp("workdir")
    old_cwd, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    yield work
    os.chdir(old_cwd)
    if old_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old_uri


def cli_refused(capsys, argv, *must: str, written=()) -> str:
    """Run ``routerzoo`` with ``argv``: exit status 2 and one ``routerzoo: error:`` line on stderr holding
    every ``must``; none of ``written`` exists afterwards. Returns the line."""
    from routerzoo.cli import main

    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("routerzoo: error: "), err
    for text in must:
        assert text in err, (text, err)
    for path in written:
        assert not path.exists(), path
    return err


MATH = [
    "Solve for x: {a}x + {b} = {c}.", "What is the derivative of x^{a} + {b}x?", "Compute the integral of {a}x^2 from 0 to {b}.",
    "Find the greatest common divisor of {a}{b} and {c}.", "If a triangle has sides {a}, {b} and {c}, what is its area?",
    "Simplify the fraction {a}{b}/{c}{a}.", "What is {a} to the power {b} modulo {c}?", "Factor the polynomial x^2 + {a}x + {b}.",
]
HISTORY = [
    "Which empire did the emperor ruling in year {a}{b}{c} belong to?", "Describe the causes of the war that began in 1{a}{b}{c}.",
    "Who signed the treaty concluded in the year 1{b}{a}{c}?", "What role did medieval monasteries play in the {a}th century?",
    "Why did the dynasty founded in {a}{b}0 BC collapse?", "Summarise the reforms of the king who reigned in 1{c}{b}{a}.",
    "How did trade routes shape the city states of the {b}th century?", "What were the consequences of the revolution of 1{a}{c}{b}?",
]
MODELS = ["math-small", "history-small", "big"]
COSTS = {"math-small": 1e-5, "history-small": 1e-5, "big": 1e-3}


def topic_outcomes(n_per_topic: int = 60, seed: int = 0, prefix: str = "p") -> pd.DataFrame:
    """Outcomes where the best cheap model depends on the topic.

    ``math-small`` answers math well and history badly, ``history-small`` the reverse, and the 100×
    more expensive ``big`` is good at both: a router that reads the prompt can reach ``big``'s
    quality at a fraction of its cost, one that does not cannot.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for topic, templates in (("math", MATH), ("history", HISTORY)):
        for i in range(n_per_topic):
            a, b, c = rng.integers(1, 10, size=3)
            prompt = templates[i % len(templates)].format(a=a, b=b, c=c) + f" (case {prefix}{i})"
            pid = f"{prefix}-{topic}-{i}"
            p_good = {"math-small": 0.9 if topic == "math" else 0.15, "history-small": 0.9 if topic == "history" else 0.15, "big": 0.92}
            for model in MODELS:
                rows.append({
                    "prompt_id": pid, "prompt": prompt, "model": model,
                    "quality": float(rng.random() < p_good[model]), "cost": COSTS[model] * (1 + 0.1 * rng.random()),
                    "category": topic,
                })
    return pd.DataFrame(rows)


@pytest.fixture
def topic_dataset(tmp_path):
    """A saved synthetic dataset directory (120 prompts × 3 models)."""
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    ds = make_dataset(topic_outcomes(), name="topics", split=SplitSpec(val=0.2, test=0.3, stratify=True))
    return save_dataset(ds, tmp_path / "topics")
