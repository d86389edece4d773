"""A team's tracking server: ``mlflow server`` on a PostgreSQL backend store, artifacts served by it.

SQLite in the working directory is the embedded default (one user, one machine). A team shares one
server instead: runs, registry versions, aliases and promotions live in PostgreSQL (safe under
concurrent writers), and artifacts are uploaded to and downloaded from the server
(``--serve-artifacts``), so clients only need ``MLFLOW_TRACKING_URI=http://HOST:PORT``.

    python -m routerzoo.zoo.team_server --root .tracking      # or: make tracking-server

starts PostgreSQL (``initdb`` on first use) and the tracking server on loopback and stops both on
Ctrl-C. PostgreSQL refuses to run as root; as root the cluster is created and run as the
unprivileged user ``nobody`` via ``setpriv`` (util-linux), which owns only the data directory.
The Python driver is psycopg (``pip install routerzoo[team]``).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

from routerzoo.errors import UserError
from routerzoo.zoo import processes

PG_BIN_DIRS = ("/usr/local/bin", *sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True))
PG_USER = "postgres"  # the cluster's superuser role (not an OS account)


def postgres_bindir() -> Path | None:
    """A folder holding ``initdb``, ``pg_ctl`` and ``postgres``: $PATH first, then the usual places."""
    on_path = shutil.which("pg_ctl")
    candidates = ([str(Path(on_path).parent)] if on_path else []) + list(PG_BIN_DIRS)
    for folder in candidates:
        if all((Path(folder) / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _unprivileged() -> tuple[list[str], int, int]:
    """Command prefix to drop root for PostgreSQL, and the uid/gid to own its files (none if not root)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise UserError("PostgreSQL refuses to run as root and `setpriv` (util-linux) is missing to drop privileges; "
                        "run as a normal user")
    user = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"], user.pw_uid, user.pw_gid


class PostgresServer:
    """A throwaway or long-lived PostgreSQL cluster in ``datadir``, listening on 127.0.0.1:``port`` only.

    Args:
        datadir: cluster folder (created by ``initdb`` on first :meth:`start`). As root, every
            folder above it must be traversable by ``nobody`` (``/tmp/...`` is; ``/root/...`` is not).
        port: TCP port on 127.0.0.1.
        bindir: PostgreSQL binaries (default :func:`postgres_bindir`).
        fast: skip fsync (tests and demos; loses data on a power cut, never on a crash of the server).
    """

    def __init__(self, datadir: str | os.PathLike, port: int, bindir: str | os.PathLike | None = None, fast: bool = False):
        self.datadir = Path(datadir)
        self.port = port
        self.bindir = bindir
        self.fast = fast

    def _run(self, args: list[str], what: str) -> None:
        prefix, _, _ = _unprivileged()
        out = subprocess.run(prefix + args, capture_output=True, text=True, timeout=120, cwd="/",
                             env=dict(os.environ, LC_ALL="C"))
        if out.returncode != 0:
            tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-3:])
            raise UserError(f"PostgreSQL {what} failed (exit {out.returncode}): {tail}")

    def start(self) -> float:
        """initdb if needed, then start and wait until it accepts connections; returns the seconds taken."""
        t0 = time.monotonic()
        bindir = Path(self.bindir) if self.bindir else postgres_bindir()
        if bindir is None:
            raise UserError("PostgreSQL binaries (initdb, pg_ctl, postgres) not found on PATH, in /usr/local/bin or "
                            "/usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql)")
        _, uid, gid = _unprivileged()
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.datadir, uid, gid)
        self.datadir.chmod(0o700)
        cluster = self.datadir / "pgdata"
        if not (cluster / "PG_VERSION").is_file():
            # trust: the server listens on loopback and a private socket folder only
            self._run([str(bindir / "initdb"), "-D", str(cluster), "-U", PG_USER, "--auth=trust", "-E", "UTF8"]
                      + (["--no-sync"] if self.fast else []), "initdb")
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run([str(bindir / "pg_ctl"), "-D", str(cluster), "-o", options, "-l", str(self.datadir / "postgres.log"),
                   "-w", "-t", "60", "start"], "start")
        self._bindir = bindir
        return time.monotonic() - t0

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its SQLAlchemy URI."""
        from routerzoo.extras import require

        psycopg = require("psycopg", "a PostgreSQL tracking store (pip install routerzoo[team])")
        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def uri(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown (open connections are closed; committed data is kept)."""
        bindir = getattr(self, "_bindir", None)
        if bindir is not None and (self.datadir / "pgdata" / "postmaster.pid").is_file():
            self._run([str(bindir / "pg_ctl"), "-D", str(self.datadir / "pgdata"), "-m", "fast", "-w", "stop"], "stop")


def start_mlflow_server(backend_uri: str, artifacts: str | os.PathLike, port: int, *, host: str = "127.0.0.1",
                        workers: int = 1, log: str | os.PathLike) -> subprocess.Popen:
    """``mlflow server`` on ``backend_uri`` serving artifacts from the folder ``artifacts``.

    MLflow's background job runner (GenAI jobs) is switched off: routers do not use it, and it
    would start a handful of consumer processes per server.
    """
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(bin_dir) / "mlflow"), "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(Path(artifacts).resolve()), "--serve-artifacts",
           "--host", host, "--port", str(port), "--workers", str(workers)]
    return processes.start(cmd, log, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routerzoo.zoo.team_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".tracking", help="folder for the PostgreSQL cluster, artifacts and logs")
    parser.add_argument("--port", type=int, default=5000, help="tracking server port on --host (default 5000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback only)")
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL port on 127.0.0.1 (default 5433)")
    parser.add_argument("--workers", type=int, default=2, help="tracking server worker processes (default 2)")
    args = parser.parse_args(argv)
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C, and a plain `kill` from a supervisor, both stop the two servers (see finally below);
    # a shell starting us in the background would otherwise leave SIGINT ignored
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    root = Path(args.root).resolve()
    pg = PostgresServer(root / "postgres", args.pg_port)
    server = None
    try:
        pg_s = pg.start()
        backend = pg.create_database("mlflow")
        t0 = time.monotonic()
        server = start_mlflow_server(backend, root / "artifacts", args.port, host=args.host, workers=args.workers,
                                     log=root / "mlflow-server.log")
        processes.wait_http(f"http://{args.host}:{args.port}/health", server, timeout=300, log=root / "mlflow-server.log")
        print(f"PostgreSQL {backend} (started in {pg_s:.1f} s)")
        print(f"tracking server http://{args.host}:{args.port} (started in {time.monotonic() - t0:.1f} s); "
              f"artifacts in {root / 'artifacts'}; log {root / 'mlflow-server.log'}")
        print(f"use it: export MLFLOW_TRACKING_URI=http://{args.host}:{args.port}   (Ctrl-C stops both)", flush=True)
        server.wait()
        return 0 if server.returncode in (0, -2, -15) else 1
    except KeyboardInterrupt:
        return 0
    except UserError as exc:
        print(f"routerzoo: error: {exc}", file=sys.stderr)
        return 2
    finally:
        processes.stop(server)
        pg.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
