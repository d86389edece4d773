"""What the request log costs a request, and what MLflow Tracing would have cost (CPU, loopback).

Everything is a difference or ratio against a baseline measured in the same run:
  1. in process, per request: :meth:`RequestLog.log` (what the request path pays) vs nothing, and
     MLflow Tracing with asynchronous logging (one trace, a decision span and a backend span, to a
     local SQLite tracking store) vs nothing; plus how fast each drains to storage;
  2. end to end (bench/serving.py's setup: kNN router over 15 candidates, fake backends, ``routerzoo
     serve`` in its own process): p50 / p99 latency of one client through a server with ``log:``
     (prompts: full, the most work) vs two servers without (an A/A control: their spread is the
     noise floor), in interleaved rounds (goal: p50 added within 1 ms of logging off), routed and
     by a backend's name (no encoder: a quieter signal on a busy machine).

    python bench/request_log.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import Prompts, backend, bench_router, pct, run_load, server  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _record(i: int) -> dict:
    return {"request_id": f"{i:032x}", "time": time.time(), "endpoint": "chat", "requested_model": "routerzoo",
            "router": "bench@1", "router_version": "1", "scores": {f"m{j}": 0.5 for j in range(15)},
            "chosen": "m3", "model": "m3", "fallbacks": [], "input_tokens": 120, "output_tokens": 16, "cost": 1e-5,
            "latency_ms": 3.0, "status": 200, "stream": False, "text": f"What is the capital of country {i}? " * 8}


def per_call(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def in_process(work: Path, n: int, mlflow_n: int) -> list[tuple[str, str, str]]:
    from routerzoo.serving.request_log import RequestLog, RequestLogConfig

    rows = []
    base = per_call(lambda i: _record(i), n)  # the baseline: building the record alone
    lg = RequestLog(RequestLogConfig(dir=str(work / "log-micro"), prompts="full", queue_size=n + 1))
    lg.start()
    logged = per_call(lambda i: lg.log(_record(i)), n)
    t0 = time.perf_counter()
    lg.stop(timeout=120)
    drain = time.perf_counter() - t0
    added = (statistics.median(logged) - statistics.median(base)) * 1e6
    print(f"1. in process, {n} records")
    print(f"   RequestLog.log added  p50 {added:6.1f} us   p99 {(pct(logged, 99) - pct(base, 99)) * 1e6:7.1f} us "
          f"(dropped {lg.dropped}); writer drained the rest in {drain:.2f} s ({lg.written / max(drain, 1e-9):.0f} rows/s "
          f"after the calls)")
    rows.append(("RequestLog.log added p50", f"{added:.1f} us", "vs building the record"))
    # everything the server's hooks do for one request: open the record, note the fields, queue it
    from routerzoo.serving.request_log import close_record, note, open_record

    def hooks(i: int) -> None:
        rec = _record(i)
        token = open_record(endpoint="chat", time=rec["time"], t0=time.perf_counter())
        note(requested_model="routerzoo", stream=False, text=rec["text"])
        note(router=rec["router"], router_version="1", chosen="m3", scores=dict(rec["scores"]))
        note(model="m3", fallbacks=[])
        note(input_tokens=120, output_tokens=16)
        note(cost=1e-5)
        done = close_record(token)
        done.pop("t0")
        done.update(request_id=rec["request_id"], status=200, latency_ms=3.0)
        lg2.log(done)

    lg2 = RequestLog(RequestLogConfig(dir=str(work / "log-hooks"), prompts="full", queue_size=n + 1))
    lg2.start()
    hooked = per_call(hooks, n)
    lg2.stop(timeout=120)
    added_h = (statistics.median(hooked) - statistics.median(base)) * 1e6
    print(f"   all request hooks     p50 {added_h:6.1f} us   p99 {(pct(hooked, 99) - pct(base, 99)) * 1e6:7.1f} us")
    rows.append(("request hooks added p50", f"{added_h:.1f} us", "open, note x5, close, queue"))
    if mlflow_n:
        os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true"
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
        mlflow.set_experiment("request-log-bench")

        @mlflow.trace(name="request")
        def traced(i):
            rec = _record(i)
            with mlflow.start_span(name="decide") as s:
                s.set_inputs({"text": rec["text"]})
                s.set_outputs({"chosen": rec["chosen"], "scores": rec["scores"]})
            with mlflow.start_span(name="backend") as s:
                s.set_attributes({k: rec[k] for k in ("model", "input_tokens", "output_tokens", "cost")})

        per_call(traced, 20)  # warm
        traced_t = per_call(traced, mlflow_n)
        base_m = base[:mlflow_n]
        t0 = time.perf_counter()
        flush = getattr(mlflow, "flush_trace_async_logging", None)
        if flush is not None:
            flush()
        drain = time.perf_counter() - t0
        added_m = (statistics.median(traced_t) - statistics.median(base_m)) * 1e6
        print(f"   MLflow trace added    p50 {added_m:6.1f} us   p99 {(pct(traced_t, 99) - pct(base_m, 99)) * 1e6:7.1f} us; "
              f"its async queue drained {mlflow_n + 20} traces in {drain:.1f} s "
              f"({(mlflow_n + 20) / max(drain, 1e-9):.0f} traces/s)")
        rows.append(("MLflow trace added p50", f"{added_m:.1f} us", f"{added_m / max(added, 1e-3):.0f}x RequestLog.log"))
    return rows


def end_to_end(work: Path, n: int, rounds: int) -> list[tuple[str, str, str]]:
    router_dir, models, base = bench_router(work)
    prompts = Prompts(base)
    log_lines = ["log:", f"  dir: {work / 'log-e2e'}", "  prompts: full"]
    names = ("log on", "log off", "log off (control)")
    routed = {k: [] for k in names}
    by_name = {k: [] for k in names}
    direct = []
    # the logging server starts first, and a second log-off server is an A/A control: on a busy
    # machine two identical servers differ by more than 1 ms, and that spread is the noise floor
    with backend("A") as (_, url_a), backend("B") as (_, url_b), \
            server(router_dir, models, url_a, url_b, work, config_lines=log_lines) as (_, url_on), \
            server(router_dir, models, url_a, url_b, work) as (_, url_off), \
            server(router_dir, models, url_a, url_b, work) as (_, url_ctl):
        urls = dict(zip(names, (url_on, url_off, url_ctl), strict=True))
        for url in urls.values():
            asyncio.run(run_load(url, "routerzoo", prompts.take(16), 4))  # warm connections and kernels
        for r in range(rounds):  # interleaved, in rotating order: drift hits every server alike
            direct += asyncio.run(run_load(url_a, "direct", prompts.take(n), 1))[0]
            for k in names[r % 3:] + names[:r % 3]:
                routed[k] += asyncio.run(run_load(urls[k], "routerzoo", prompts.take(n), 1))[0]
                # by a backend's name: logged all the same, but no encoder in the way (a quieter signal)
                by_name[k] += asyncio.run(run_load(urls[k], models[0], prompts.take(n), 1))[0]
    rows = []
    print(f"2. end to end, one client, {len(routed[names[0]])} requests per server and path in {rounds} rounds "
          f"(backend directly: p50 {pct(direct, 50) * 1000:.2f} ms)")
    for path, lat in (("routed", routed), ("by name", by_name)):
        p50 = {k: pct(v, 50) for k, v in lat.items()}
        off = (p50["log off"] + p50["log off (control)"]) / 2
        spread = abs(p50["log off"] - p50["log off (control)"])
        for k in names:
            print(f"   {path:<8} {k:<18} p50 {p50[k] * 1000:7.2f} ms   p99 {pct(lat[k], 99) * 1000:7.2f} ms")
        added = p50["log on"] - off
        print(f"   {path:<8} added by the log p50 {added * 1000:+.2f} ms vs the mean of the log-off servers; "
              f"A/A spread {spread * 1000:.2f} ms (goal: within 1 ms: "
              f"{'met' if added <= 0.001 else 'not shown' if added <= spread else 'missed'})")
        rows.append((f"{path}: log on - off p50", f"{added * 1000:+.2f} ms", f"A/A spread {spread * 1000:.2f} ms"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, noisier numbers)")
    ap.add_argument("--no-mlflow", action="store_true", help="skip the MLflow Tracing comparison")
    ap.add_argument("--no-server", action="store_true", help="skip section 2 (the servers)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rz-bench-log-"))
    os.environ["ROUTERZOO_CACHE"] = str(work / "cache")
    scale = 0.25 if args.quick else 1.0
    rows = in_process(work, int(20000 * scale), 0 if args.no_mlflow else int(400 * scale))
    if not args.no_server:
        rows += end_to_end(work, int(32 * scale) or 8, 12)
    print("\nsummary")
    for name, value, ratio in rows:
        print(f"  {name:<28} {value:>12}  {ratio}")


if __name__ == "__main__":
    main()
