"""The router server under load, on loopback: latency, throughput and failure drills, CPU.

Everything is a ratio against a baseline measured in the same run:
  0. the bare encoder with 1 torch thread vs one per core, interleaved (the server's default);
  1. added latency p50 / p99 of a request through ``routerzoo serve`` vs the same request sent to the
     backend directly, and vs the bare encoder encoding one prompt
     (goal: p50 added <= single-prompt encode + 3 ms); and by name (no routing);
  2. throughput at 1, 16 and 64 concurrent clients vs the encoder's batched throughput
     (goal: >= 90% at 64 clients, which only micro-batching reaches);
  3. failure drill: one of two backends SIGKILLed during 1,000 requests at 32 concurrency, failed
     client requests (goal 0); and the same with an alias promotion in the middle.

The router is a kNN router trained on the bundled MMLU-Pro sample (15 candidate models, real prompt
lengths); every request carries a prompt never seen before (so the encoder's memory cache never
answers). Backends are fake OpenAI-compatible servers (``routerzoo.serving.testing``) in their own
processes that answer at once; the server is ``routerzoo serve`` in its own process; the clients are
httpx in this process.

The server and the bare-encoder baseline use the same torch threads (``--threads``, default 1 as the
server's default); ``--compare-threads`` measures 1 thread against one per core in the same run.

    python bench/serving.py [--workdir DIR] [--quick] [--threads N | --compare-threads] [--no-drills]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@contextmanager
def backend(name: str):
    """A fake backend process on loopback; yields (process, base URL without /v1)."""
    proc = subprocess.Popen([sys.executable, "-m", "routerzoo.serving.testing", "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake backend {name} did not start: {line!r}")
        yield proc, f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(10)


@contextmanager
def server(router: str, models: list[str], url_a: str, url_b: str, work: Path, extra: list[str] = (),
           config_lines: list[str] = ()):
    """``routerzoo serve`` in its own process; half the candidates on backend A, half on B.

    ``config_lines``: more YAML lines for the serve config (e.g. a ``log:`` section).
    """
    from routerzoo.serving.testing import free_port

    port = free_port()
    lines = ["backends:"]
    for i, m in enumerate(models):
        lines += [f"  {m!r}:", f"    base_url: {(url_a if i % 2 == 0 else url_b)}/v1"]
    lines += ["logging:", "  level: warning", "cooldown:", "  cooldown_s: 60", *config_lines]
    config = work / f"serve-{port}.yaml"
    config.write_text("\n".join(lines) + "\n")
    exe = Path(sys.executable).with_name("routerzoo")
    proc = subprocess.Popen([str(exe), "serve", router, "--config", str(config), "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"routerzoo serve exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("routerzoo serve not ready after 120 s")
            time.sleep(0.1)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


class Prompts:
    """Prompts never sent before: the sample's questions with a running request number."""

    def __init__(self, base: list[str]):
        self.base = base
        self.i = 0

    def take(self, n: int) -> list[str]:
        out = [f"{self.base[(self.i + k) % len(self.base)]} (request {self.i + k})" for k in range(n)]
        self.i += n
        return out


async def run_load(url: str, model: str, texts: list[str], concurrency: int, on_done=None) -> tuple[list[float], list, float]:
    """POST every text (chat) at ``concurrency``; (latencies s, failures, wall s)."""
    import httpx

    latencies, failures = [], []
    queue = list(reversed(texts))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as h:
        async def worker():
            nonlocal done
            while queue:
                text = queue.pop()
                body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
                t0 = time.perf_counter()
                try:
                    r = await h.post("/v1/chat/completions", json=body)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                latencies.append(time.perf_counter() - t0)
                done += 1
                if on_done is not None:
                    on_done(done)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, failures, wall


def encoder_baseline(encoder_id: str, prompts: Prompts, scale: float) -> tuple[float, float]:
    """(median seconds to encode one prompt, batched prompts/s) of the bare encoder, in this process."""
    from routerzoo.routers.encoders.encoder import Encoder

    enc = Encoder(encoder_id, cache_dir="", show_progress=False)
    enc.encode(prompts.take(8))
    singles = []
    for text in prompts.take(int(100 * scale) or 20):
        t0 = time.perf_counter()
        enc.encode([text])
        singles.append(time.perf_counter() - t0)
    batch = 64
    t0 = time.perf_counter()
    rounds = max(2, int(6 * scale))
    for _ in range(rounds):
        enc.encode(prompts.take(batch))
    return statistics.median(singles), rounds * batch / (time.perf_counter() - t0)


def threads_table(encoder_id: str, prompts: Prompts, rounds: int = 12) -> list:
    """Section 0: the bare encoder with 1 torch thread vs one per core, interleaved round by round so
    both see the same machine load (the server's ``threads`` default is chosen from this)."""
    import torch

    from routerzoo.routers.encoders.encoder import Encoder, set_threads

    cores = os.cpu_count() or 1
    default = torch.get_num_threads()
    enc = Encoder(encoder_id, cache_dir="", show_progress=False, max_cached=0)
    enc.encode(prompts.take(8))
    one: dict[int, list] = {1: [], cores: []}
    batch: dict[int, list] = {1: [], cores: []}
    for r in range(rounds):
        for t in (1, cores):
            set_threads(t)
            t0 = time.perf_counter()
            enc.encode(prompts.take(1))
            one[t].append(time.perf_counter() - t0)
            if r % 4 == 0:
                t0 = time.perf_counter()
                enc.encode(prompts.take(16))
                batch[t].append(16 / (time.perf_counter() - t0))
    set_threads(default)
    print(f"0. encoder threads, interleaved ({rounds} rounds)")
    rows = []
    for t in (1, cores):
        o, b = statistics.median(one[t]), statistics.median(batch[t])
        print(f"   threads={t}: one prompt {o * 1000:7.1f} ms (median)   batch of 16 {b:6.1f} prompts/s")
        rows.append((f"encoder threads={t}", f"{o * 1000:.1f} ms one prompt",
                     f"{b:.1f} prompts/s batched; one-prompt ratio {o / statistics.median(one[1]):.2f}x threads=1"))
    return rows


def measure(router_dir: str, models: list[str], work: Path, prompts: Prompts, scale: float, threads: int) -> list:
    """Sections 1 and 2 with the server (and the bare encoder baseline) on ``threads`` torch threads."""
    import torch

    from routerzoo.routers import load_router
    from routerzoo.routers.encoders.encoder import set_threads

    label = f"threads={threads or torch.get_num_threads()}" + (" (0: one per core)" if not threads else "")
    default_threads = torch.get_num_threads()
    set_threads(threads or os.cpu_count() or 1)
    encode_one, enc_throughput = encoder_baseline(load_router(router_dir).encoder, prompts, scale)
    set_threads(default_threads)
    print(f"\n== {label}\nencoder: one prompt {encode_one * 1000:.1f} ms (median); batched (64) {enc_throughput:.0f} prompts/s")
    rows = []
    n_seq = int(200 * scale) or 40
    extra = ["--threads", str(threads)]
    with backend("A") as (_, url_a), backend("B") as (_, url_b), \
            server(router_dir, models, url_a, url_b, work, extra) as (_, url):
        asyncio.run(run_load(url, "routerzoo", prompts.take(32), 8))  # warm connections and kernels
        asyncio.run(run_load(url_a, "direct", ["warm-up"] * 20, 1))
        # the baseline: the same chat requests straight to the backend
        direct, _, _ = asyncio.run(run_load(url_a, "direct", prompts.take(n_seq), 1))
        through, fails, _ = asyncio.run(run_load(url, "routerzoo", prompts.take(n_seq), 1))
        by_name, name_fails, _ = asyncio.run(run_load(url, models[0], prompts.take(n_seq), 1))
        d50, d99 = pct(direct, 50), pct(direct, 99)
        s50, s99 = pct(through, 50), pct(through, 99)
        n50 = pct(by_name, 50)
        print(f"1. latency, one client, {n_seq} requests each (failed: {len(fails) + len(name_fails)})")
        print(f"   backend directly     p50 {d50 * 1000:7.2f} ms   p99 {d99 * 1000:7.2f} ms")
        print(f"   through routerzoo    p50 {s50 * 1000:7.2f} ms   p99 {s99 * 1000:7.2f} ms")
        print(f"   added                p50 {(s50 - d50) * 1000:7.2f} ms   p99 {(s99 - d99) * 1000:7.2f} ms")
        print(f"   added by name (no routing) p50 {(n50 - d50) * 1000:7.2f} ms")
        print(f"   added p50 / one-prompt encode: {(s50 - d50) / encode_one:.2f}x  "
              f"(goal: added <= encode + 3 ms = {(encode_one + 0.003) * 1000:.1f} ms: "
              f"{'met' if s50 - d50 <= encode_one + 0.003 else 'missed'})")
        rows.append((f"[{label}] encode one prompt", f"{encode_one * 1000:.2f} ms", ""))
        rows.append((f"[{label}] added latency p50", f"{(s50 - d50) * 1000:.2f} ms", f"{(s50 - d50) / encode_one:.2f}x encode-one"))
        rows.append((f"[{label}] added latency p99", f"{(s99 - d99) * 1000:.2f} ms", f"{(s99 - d99) / encode_one:.2f}x encode-one"))
        rows.append((f"[{label}] added by name p50", f"{(n50 - d50) * 1000:.2f} ms", "no routing"))

        print("2. throughput through routerzoo (chat requests/s) vs the encoder's batched prompts/s")
        for conc in (1, 16, 64):
            n = max(conc * 4, int({1: 60, 16: 320, 64: 640}[conc] * scale))
            lat, fails, wall = asyncio.run(run_load(url, "routerzoo", prompts.take(n), conc))
            rps = n / wall
            print(f"   {conc:3d} clients: {rps:7.1f} req/s  = {rps / enc_throughput:6.1%} of the encoder's batched "
                  f"throughput  (p50 {pct(lat, 50) * 1000:.0f} ms, failed {len(fails)})")
            rows.append((f"[{label}] throughput, {conc} clients", f"{rps:.1f} req/s",
                         f"{rps / enc_throughput:.1%} of encoder batched"))
    return rows


def bench_router(work: Path) -> tuple[str, list[str], list[str]]:
    """A kNN router trained on the bundled MMLU-Pro sample: (artifact dir, candidates, sample prompts)."""
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.demo import sample_dir
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    ds = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="bench")
    data = save_dataset(ds, work / "data")
    result = train_router("knn", KNNConfig(), data, work / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    return str(result.router_dir), list(result.router.models), list(ds.outcome_matrix().prompts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, noisier numbers)")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads (and the bare encoder's)")
    ap.add_argument("--compare-threads", action="store_true",
                    help="sections 1 and 2 with 1 thread and with one per core, in this run")
    ap.add_argument("--no-drills", action="store_true", help="skip section 3 (the failure drills)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rz-bench-serving-"))
    os.environ["ROUTERZOO_CACHE"] = str(work / "cache")
    scale = 0.25 if args.quick else 1.0

    router_dir, models, base = bench_router(work)
    prompts = Prompts(base)
    print(f"router: kNN over {len(models)} candidates, {len(base)} sample prompts "
          f"(mean {statistics.mean(len(p) for p in base):.0f} chars); 2 CPU cores shared by clients, server and backends")

    from routerzoo.routers import load_router

    rows = threads_table(load_router(router_dir).encoder, prompts, rounds=max(6, int(24 * scale)))
    settings = [args.threads] if not args.compare_threads else [1, 0]
    for threads in settings:
        rows += measure(router_dir, models, work, prompts, scale, threads)
    if args.no_drills:
        print_summary(rows)
        return

    n_drill = int(1000 * scale)
    print(f"\n3. failure drill: {n_drill} requests at 32 concurrency; backend A (half the candidates) SIGKILLed after 30%")
    with backend("A") as (proc_a, url_a), backend("B") as (_, url_b), server(router_dir, models, url_a, url_b, work) as (_, url):
        def kill(done):
            if done == int(0.3 * n_drill):
                proc_a.kill()

        lat, fails, wall = asyncio.run(run_load(url, "routerzoo", prompts.take(n_drill), 32, on_done=kill))
        print(f"   failed client requests: {len(fails)} of {n_drill}  ({n_drill / wall:.0f} req/s, p99 {pct(lat, 99) * 1000:.0f} ms)")
        rows.append(("drill: backend killed", f"{len(fails)} failed / {n_drill}", "goal 0"))

    print("   again, serving models:/bench@champion, with the alias promoted to a new version after 50%")
    from routerzoo.zoo import tracking
    from routerzoo.zoo.pyfunc import log_router_model, set_alias

    uri = f"sqlite:///{work / 'mlflow.db'}"

    def register() -> str:
        with tracking.run("bench-serving", uri=uri):
            version = log_router_model(router_dir, registered_name="bench").registered_model_version
        set_alias("bench", "champion", version)
        return str(version)

    register()
    extra = ["--tracking-uri", uri, "--reload-interval", "0.5"]
    with backend("A") as (proc_a, url_a), backend("B") as (_, url_b), \
            server("models:/bench@champion", models, url_a, url_b, work, extra) as (_, url):
        promoted = threading.Event()

        def kill_and_promote(done):
            if done == int(0.3 * n_drill):
                proc_a.kill()
            if done == int(0.5 * n_drill):
                threading.Thread(target=lambda: (register(), promoted.set()), daemon=True).start()

        lat, fails, wall = asyncio.run(run_load(url, "routerzoo", prompts.take(n_drill), 32, on_done=kill_and_promote))
        promoted.wait(60)
        import httpx

        deadline = time.monotonic() + 30
        version = None
        while time.monotonic() < deadline:
            version = httpx.get(url + "/ready").json()["router"]["version"]
            if version == "2":
                break
            time.sleep(0.2)
        print(f"   failed client requests: {len(fails)} of {n_drill}; serving version {version} afterwards")
        rows.append(("drill: killed + promotion", f"{len(fails)} failed / {n_drill}", f"now version {version}"))

    print_summary(rows)


def print_summary(rows: list[tuple[str, str, str]]) -> None:
    print("\nsummary")
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"  {name:<{width}}  {value:>22}  {ratio}")


if __name__ == "__main__":
    main()
