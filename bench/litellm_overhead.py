"""By-name proxy overhead: routerzoo serve vs LiteLLM's proxy in front of the same backend.

Both proxies forward ``{"model": NAME}`` to one fake OpenAI-compatible backend
(``routerzoo.serving.testing``) on loopback, with no routing; the backend called directly is the
baseline, measured in the same run, interleaved round by round so that a busy machine slows every
side alike. LiteLLM is not a routerzoo dependency: point ``--litellm`` at its ``litellm`` command,
installed anywhere (``python -m venv /tmp/ll && /tmp/ll/bin/pip install 'litellm[proxy]'``); the
bench says so and stops when it is missing.

    python bench/litellm_overhead.py --litellm /tmp/ll/bin/litellm [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import backend, bench_router, server  # noqa: E402  (bench/serving.py: the same helpers)

from routerzoo.serving.testing import free_port  # noqa: E402


def start_litellm(exe: str, backend_url: str, work: Path):
    """LiteLLM's proxy with one model ``m`` forwarded to the backend; (process, base URL)."""
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
                      f"      api_base: {backend_url}/v1\n      api_key: none\n"
                      "litellm_settings:\n  telemetry: false\n")
    # loopback only, as routerzoo runs here without keys; LiteLLM refuses to start keyless otherwise
    env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
               LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true")
    proc = subprocess.Popen([exe, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"litellm exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("litellm not ready after 180 s")
        time.sleep(0.2)


def one(client: httpx.Client, url: str, model: str, i: int) -> float:
    body = {"model": model, "messages": [{"role": "user", "content": f"Say hello ({i})"}], "max_tokens": 8}
    t0 = time.perf_counter()
    r = client.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer none"})
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--litellm", default=shutil.which("litellm"), help="the litellm command (default: on PATH)")
    ap.add_argument("--requests", type=int, default=200, help="requests per side")
    args = ap.parse_args()
    if not args.litellm or not Path(args.litellm).exists():
        print("LiteLLM is not installed: pass --litellm PATH (see the module docstring); nothing measured")
        return
    work = Path(tempfile.mkdtemp(prefix="rz-bench-litellm-"))
    os.environ["ROUTERZOO_CACHE"] = str(work / "cache")
    router_dir, models, _ = bench_router(work)
    with backend("A") as (_, url_b), server(router_dir, models, url_b, url_b, work) as (_, url_rz):
        ll_proc, url_ll = start_litellm(args.litellm, url_b, work)
        try:
            sides = {"backend directly": (url_b, "m"), "routerzoo by name": (url_rz, models[0]),
                     "LiteLLM proxy": (url_ll, "m")}
            times: dict[str, list[float]] = {k: [] for k in sides}
            with httpx.Client(timeout=30) as client:
                for i in range(10):  # warm every side's connections and code paths
                    for _name, (url, model) in sides.items():
                        one(client, url, model, i)
                for i in range(args.requests):  # interleaved: one request per side per round
                    for name, (url, model) in sides.items():
                        times[name].append(one(client, url, model, i))
        finally:
            ll_proc.terminate()
            ll_proc.wait(30)
    base = np.percentile(times["backend directly"], [50, 99]) * 1000
    print(f"{args.requests} requests per side, interleaved; one client; 2 CPU cores shared by all processes")
    for name, t in times.items():
        p50, p99 = np.percentile(t, [50, 99]) * 1000
        added = "" if name == "backend directly" else f"   added p50 {p50 - base[0]:6.2f} ms  p99 {p99 - base[1]:6.2f} ms"
        print(f"  {name:<18} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{added}")
    rz = np.percentile(times["routerzoo by name"], 50) * 1000 - base[0]
    ll = np.percentile(times["LiteLLM proxy"], 50) * 1000 - base[0]
    print(f"  LiteLLM's added p50 / routerzoo's: {ll / rz:.1f}x" if rz > 0 else "")


if __name__ == "__main__":
    main()
