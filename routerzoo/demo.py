"""``routerzoo demo``: the whole spine on the bundled MMLU-Pro sample, on embedded defaults.

import the sample → train kNN, MLP and baselines (logged to MLflow) → evaluate on the held-out
test split → print a table → write reports (JSON) and a cost-quality plot (PNG).
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

DEMO_ROUTERS = ("knn", "mlp", "best-single", "random")


def sample_dir() -> Path:
    """The bundled MMLU-Pro sample (15 models × 1,501 questions, Apache-2.0)."""
    return Path(str(resources.files("routerzoo") / "resources" / "sample" / "mmlu-pro"))


def run_demo(workdir: Path, routers: tuple[str, ...] = DEMO_ROUTERS, progress: bool | None = None) -> dict:
    """Run the demo in ``workdir``; returns {"reports": {kind: test report}, "champion": {...}, "workdir": path}."""
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.evaluation.plot import plot_reports
    from routerzoo.evaluation.report import format_table
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.routers import load_router
    from routerzoo.routers.registry import get_kind
    from routerzoo.training.train import TrackingConfig, train_router

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workdir / 'mlflow.db'}"
    t_start = time.perf_counter()

    print(f"[1/5] importing the bundled MMLU-Pro sample from {sample_dir()}")
    data_dir = workdir / "data" / "mmlu-pro-sample"
    dataset = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample",
                           split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True))
    save_dataset(dataset, data_dir, overwrite=True)  # the demo owns its workdir
    counts = dataset.manifest["counts"]
    print(f"      {counts['prompts']} prompts × {counts['models']} models, splits {counts['splits']}")

    reports: dict = {}
    trained: dict = {}
    for i, kind in enumerate(routers, 1):
        print(f"[2/5] training {kind} ({i}/{len(routers)})")
        result = train_router(
            kind, get_kind(kind, role="router").load_config()(), data_dir, workdir / "routers" / kind,
            overwrite=True,  # the demo owns its workdir: a rerun replaces its routers
            tracking=TrackingConfig(tracking_uri=tracking_uri, experiment="routerzoo-demo", run_name=f"demo-{kind}"),
            progress=progress,
        )
        trained[kind] = result
        val = result.reports.get("val", {})
        print(f"      {result.router_dir}  (MLflow run {result.run_id}, fit {result.fit_metrics.get('fit_s', 0):.1f}s, "
              f"validation gap closed {val.get('gap_closed') or 0:.1%})")

    print("[3/5] evaluating on the held-out test split")
    reports_dir = workdir / "reports"
    reports_dir.mkdir(exist_ok=True)
    for kind in routers:
        router = load_router(workdir / "routers" / kind)
        report = evaluate_router(router, dataset, "test")
        reports[kind] = report
        (reports_dir / f"{kind}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_path = reports_dir / "cost_quality.png"
    plot_reports({k: reports[k] for k in routers if k in ("knn", "mlp", "random")}, plot_path,
                 title="MMLU-Pro sample, test split: cost vs quality")

    print("[4/5] results (test split, AIQ over the single models' cost range)")
    print(format_table([report | {"name": kind} for kind, report in reports.items()]))
    any_report = next(iter(reports.values()))
    best = any_report["best_single"]
    print(f"best single model: {best['name']} (quality {best['quality']:.3f} at ${best['cost']:.5f}/prompt); "
          f"oracle quality {any_report['oracle']['quality']:.3f}")
    champion = _register_and_query(trained, tracking_uri)
    served: list[dict] = []
    if champion:
        print("[5/5] serving models:/routerzoo-demo@champion with `routerzoo serve` on loopback")
        served = _serve_and_chat(workdir, tracking_uri, champion)
    print(f"plot:    {plot_path}")
    print(f"reports: {reports_dir}")
    print(f"MLflow:  mlflow ui --backend-store-uri {tracking_uri}")
    print(f"done in {time.perf_counter() - t_start:.0f}s")
    return {"reports": reports, "champion": champion, "served": served, "workdir": workdir}


EXAMPLE_QUERIES = [
    "What is the integral of x^2 * e^x dx?",
    "Which of the following best describes the function of the mitochondria? A. protein synthesis B. ATP production",
    "Under the doctrine of stare decisis, a lower court must follow which precedents?",
]


def _register_and_query(trained: dict, tracking_uri: str) -> dict:
    """Register the learned router with the best *validation* gap closed as routerzoo-demo@champion,
    then load it back by alias and route a few queries, as a server would."""
    import pandas as pd

    from routerzoo.zoo.pyfunc import load_registered, register
    from routerzoo.zoo.tracking import setup

    setup(tracking_uri)
    learned = {k: r for k, r in trained.items() if k in ("knn", "mlp") and r.model_uri}
    if not learned:
        return {}
    best = max(learned, key=lambda k: learned[k].reports["val"]["gap_closed"] or 0.0)
    version = register(learned[best].model_uri, "routerzoo-demo", alias="champion",
                       tags={"promoted_by": "demo: best validation gap closed"})
    print(f"registered {best} as routerzoo-demo version {version}, alias @champion (best validation gap closed)")
    model = load_registered("models:/routerzoo-demo@champion")
    val = learned[best].reports["val"]
    budget = _budget_cost_weight(val)
    frame = pd.DataFrame({"prompt": EXAMPLE_QUERIES})
    quality_first = model.predict(frame, params={"cost_weight": 0.0})["model"]
    thrifty = model.predict(frame, params={"cost_weight": budget})["model"]
    print(f"models:/routerzoo-demo@champion routes (λ=0 | λ={budget:.3g}, ≈ half the best single model's cost on validation):")
    for query, a, b in zip(EXAMPLE_QUERIES, quality_first, thrifty, strict=True):
        print(f"  {query[:60]:<60}  →  {a} | {b}")
    return {"router": best, "version": version, "cost_weight": budget}


#: the two candidates the demo gives backends to: the best single model and a cheap, strong one
DEMO_BACKENDS = ("gemini-1.5-pro-002", "gemini-1.5-flash-002")


def _start(cmd: list[str], env: dict, log, ready: str, timeout: float = 120.0):
    """Start ``cmd``; wait until a line of its output starts with ``ready``; return (process, line)."""
    import subprocess
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    found: list[str] = []

    def pump():
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if not found and line.startswith(ready):
                found.append(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{' '.join(cmd[:4])} did not start; see {log.name}")
        time.sleep(0.05)
    return proc, found[0]


def _serve_and_chat(workdir: Path, tracking_uri: str, champion: dict) -> list[dict]:
    """Start two stand-in OpenAI-compatible backends and `routerzoo serve` on loopback, send chat
    requests with the official openai client, print who answered and why, and stop everything.

    The backends are routerzoo's test backends (they answer at once, naming themselves): the demo
    shows the routing and the protocol, not an LLM. Point ``--backend`` at vLLM, TGI, SGLang or
    Ollama servers to route real traffic (README, "Serving").
    """
    import json as _json
    import socket
    import sys
    import urllib.request

    import yaml

    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    procs = []
    answers: list[dict] = []
    log_path = workdir / "serve.log"
    with open(log_path, "w") as log:
        try:
            ports = {}
            for model in DEMO_BACKENDS:
                proc, line = _start([sys.executable, "-m", "routerzoo.serving.testing", "--name", model], env, log, "PORT")
                procs.append(proc)
                ports[model] = int(line.split()[1])
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            config = {
                "backends": {m: {"base_url": f"http://127.0.0.1:{p}/v1"} for m, p in ports.items()},
                "restrict_to_backends": True,  # the other 13 candidates have no backend in the demo
                "port": port,
                "profiles": {"thrifty": {"cost_weight": champion["cost_weight"]}},
            }
            config_path = workdir / "serve.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            server, _ = _start([sys.executable, "-m", "routerzoo", "serve", "models:/routerzoo-demo@champion",
                                "--config", str(config_path)], env, log, "routerzoo: serving")
            procs.append(server)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:  # /ready turns 200 once the router is loaded and warmed
                try:
                    with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not become ready; see {log_path}")
                time.sleep(0.2)
            from openai import OpenAI

            client = OpenAI(base_url=f"{base}/v1", api_key="demo")
            print(f"      server {base}/v1 (log {log_path}); backends for {', '.join(DEMO_BACKENDS)}")
            for query in EXAMPLE_QUERIES:
                for label, options in (("best quality", {}), ("thrifty", {"profile": "thrifty"})):
                    raw = client.chat.completions.with_raw_response.create(
                        model="routerzoo", messages=[{"role": "user", "content": query}],
                        extra_body={"routerzoo": options} if options else None)
                    answer = raw.parse()
                    scores = _json.loads(raw.headers.get("x-routerzoo-scores", "{}"))
                    why = ", ".join(f"{m.split('-')[-2] if '-' in m else m} q̂={v:.2f}" for m, v in scores.items() if m in DEMO_BACKENDS) \
                        if isinstance(scores, dict) else str(scores)
                    usd = float(raw.headers.get("x-routerzoo-cost-usd", 0))
                    answers.append({"query": query, "profile": label, "model": answer.model, "cost_usd": usd,
                                    "content": answer.choices[0].message.content})
                    print(f"      {query[:44]:<44} [{label:<12}] → {answer.model:<20} ({why}; est. ${usd:.6f})")
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except Exception:
                    proc.kill()
    print("      stopped the server and both backends")
    return answers


def _budget_cost_weight(report: dict) -> float:
    """The validation curve's best-quality λ whose mean cost is at most half the best single model's."""
    limit = 0.5 * report["best_single"]["cost"]
    affordable = [p for p in report["curve"] if p["cost"] <= limit]
    if not affordable:
        return report["curve"][-1]["cost_weight"]
    return max(affordable, key=lambda p: (p["quality"], -p["cost"]))["cost_weight"]
