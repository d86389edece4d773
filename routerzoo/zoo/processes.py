"""Start, wait for and stop a server process (``mlflow server``, ``mlflow models serve``, PostgreSQL).

Each server runs in its own process group (``start_new_session``) so that stopping it also ends
what it spawned (uvicorn workers, MLflow's job consumers) and nothing outlives a test or a Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from routerzoo.errors import UserError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: str | os.PathLike, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """Start ``cmd`` in a new process group with stdout and stderr appended to ``log``."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, **kwargs)


def _tail(log: str | os.PathLike | None, n: int = 3) -> str:
    if log is None or not Path(log).is_file():
        return ""
    lines = [x for x in Path(log).read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-n:])


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0,
              log: str | os.PathLike | None = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited.

    Raises:
        UserError: the process exited first or ``timeout`` passed (with the log's last lines).
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"server exited with status {proc.returncode} before answering {url}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise UserError(f"no answer from {url} after {timeout:.0f} s: {_tail(log)}")


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``proc`` (started by :func:`start`), wait up to ``timeout``, then
    SIGKILL the group: children that outlive their leader (job consumers, workers) go too."""
    if proc is None:
        return
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def mlflow_models_serve(model_uri: str, tracking_uri: str, log: str | os.PathLike, timeout: float = 180.0):
    """Start ``mlflow models serve -m MODEL_URI --env-manager local`` on a free loopback port.

    Returns:
        ``(process, url, seconds until /ping answered)``; stop it with :func:`stop`.
    """
    import sys

    bin_dir = str(Path(sys.executable).parent)  # mlflow runs `uvicorn` from PATH: this environment's
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    port = free_port()
    t0 = time.monotonic()
    proc = start([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                  "--host", "127.0.0.1", "--port", str(port)], log, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=timeout, log=log)
    except BaseException:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}", time.monotonic() - t0


def invoke_prompts(url: str, prompts: list[str], params: dict | None = None, timeout: float = 120.0) -> list[str]:
    """POST ``prompts`` to a pyfunc scoring server's ``/invocations``; the chosen model per prompt."""
    import json

    body: dict = {"dataframe_split": {"columns": ["prompt"], "data": [[p] for p in prompts]}}
    if params:
        body["params"] = params
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return [row["model"] for row in json.loads(resp.read())["predictions"]]
