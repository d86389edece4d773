"""The server's request log and feedback store: served traffic kept as queryable, crash-safe data.

Enabled by a ``log:`` section in the serve config (:class:`RequestLogConfig`); the schema is
documented in ``docs/request-log.md`` and defined once here (:data:`SCHEMA`).

Storage: SQLite in WAL mode, one database file per segment (``DIR/requests.db`` is the current one,
rotated by size or age into ``DIR/requests.000001.db``, ``.000002``, ...; the oldest beyond
``keep_segments`` are deleted). Why SQLite and not MLflow Tracing (the team's UI):

* overhead: the goal is p50 added latency within 1 ms of logging off. With asynchronous trace
  logging MLflow still builds OpenTelemetry spans, serialises them and runs its trace processors on
  the calling thread; ``bench/request_log.py`` measures that per request next to this log's cost
  (the report of issue 20 gives the numbers). Here the request path pays one ``deque.append``
  under a lock; everything else happens in a writer thread.
* bounded, never blocking: MLflow's async queue is not a bounded, drop-counting store under our
  control; here a full queue drops the record and counts it (:attr:`RequestLog.dropped`).
* durable feedback: an acknowledged ``POST /v1/feedback`` must survive a SIGKILL right after its
  200. A SQLite transaction committed with ``synchronous=FULL`` does; an async trace assessment
  does not.
* privacy: ``prompts: off`` must keep every prompt text out of storage; a trace's inputs would
  need scrubbing on every span.
* queryable by anyone with ``sqlite3``, pandas or DuckDB, no tracking server needed; a crash leaves
  a readable database (transactions), never a torn file.

Request path: :meth:`RequestLog.log` appends a dict to a bounded in-memory queue and returns (a
full queue drops it and counts the drop). The writer thread drains the queue every
``flush_interval_s`` (or at once when feedback waits), writes the batch in one transaction, then
rotates when due. Feedback (:meth:`RequestLog.add_feedback`) goes through the same thread but is
never dropped: the caller gets a future that resolves once the row is committed.

Per-request fields are collected with :func:`note` from anywhere in the request's task (a
:class:`contextvars.ContextVar` holds the record the server opened for it), so the server's hooks
are one line each.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import hashlib
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from routerzoo.data.request_log_format import (  # the on-disk format, shared with the serve-log importer
    _SEGMENT,
    CURRENT,
    FEEDBACK_SOURCES,
    PROMPT_MODES,
    REQUEST_COLUMNS,
    SALT_FILE,
    SCHEMA,
    SCHEMA_VERSION,
    SHADOW_COLUMNS,
    WINNERS,
    segment_files,
)
from routerzoo.errors import ConfigError

log = logging.getLogger("routerzoo.serving.request_log")

_JSON_COLUMNS = ("scores", "fallbacks", "extra")


@dataclass
class RequestLogConfig:
    """The ``log:`` section of the serve config: what the server keeps of each request.

    Attributes:
        dir: directory of the log (created if missing): ``requests.db`` and rotated segments.
        prompts: what is kept of the routing text: ``off`` (nothing, the default; such a log
            cannot become training data), ``hash`` (a salted sha256, to count repeats), ``full``
            (the text; keep the directory as private as the prompts).
        salt_env: environment variable holding the salt of ``prompts: hash``; empty = a random
            salt kept in ``DIR/salt`` (mode 0600), made on first start.
        max_segment_mb: rotate the current segment once it is this large, MiB.
        max_segment_age_h: rotate the current segment once it is this old, hours (0 = never).
        keep_segments: most rotated segments kept; older ones are deleted (the log's size bound is
            about ``(keep_segments + 1) * max_segment_mb``).
        queue_size: most records waiting for the writer; more are dropped and counted.
        flush_interval_s: the writer writes waiting records at least this often, seconds.
        max_tracked: most recent request ids remembered in memory for feedback (older ones are
            looked up in the segments).
    """

    dir: str = ""
    prompts: str = "off"
    salt_env: str = ""
    max_segment_mb: float = 256.0
    max_segment_age_h: float = 24.0
    keep_segments: int = 30
    queue_size: int = 10_000
    flush_interval_s: float = 0.2
    max_tracked: int = 100_000

    def __post_init__(self):
        if not self.dir:
            raise ConfigError("log.dir must name a directory for the request log")
        if self.prompts not in PROMPT_MODES:
            raise ConfigError(f"log.prompts must be one of {list(PROMPT_MODES)}, got {self.prompts!r}")
        if self.salt_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.salt_env):
            raise ConfigError(f"log.salt_env must be an environment variable name, got {self.salt_env!r}")
        for name in ("max_segment_mb", "flush_interval_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"log.{name} must be a positive number, got {v}")
        if not (math.isfinite(self.max_segment_age_h) and self.max_segment_age_h >= 0):
            raise ConfigError(f"log.max_segment_age_h must be a number >= 0, got {self.max_segment_age_h}")
        for name in ("keep_segments", "queue_size", "max_tracked"):
            if getattr(self, name) < 1:
                raise ConfigError(f"log.{name} must be an integer >= 1, got {getattr(self, name)}")


class FeedbackRefused(Exception):
    """Feedback the store refuses: ``status`` 404 (unknown request id) or 409 (a duplicate)."""

    def __init__(self, status: int, message: str, param: str = "request_id", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


# -- per-request record -----------------------------------------------------------------------------
_current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("routerzoo_request_record", default=None)


def open_record(**fields) -> contextvars.Token:
    """Start collecting fields for the request handled in this task; returns the token to reset."""
    return _current.set(dict(fields))


def current_record() -> dict | None:
    """The record of the request handled in this task, or None (logging off, or not a request)."""
    return _current.get()


def note(**fields) -> None:
    """Add fields to the current request's record (nothing when there is none): the server's hook."""
    rec = _current.get()
    if rec is not None:
        rec.update(fields)


def close_record(token: contextvars.Token) -> dict | None:
    rec = _current.get()
    _current.reset(token)
    return rec


# -- the log ------------------------------------------------------------------------------------------
class RequestLog:
    """A bounded, non-blocking request log with a durable feedback table, written by one thread.

    Args:
        config: the ``log:`` section.
    """

    def __init__(self, config: RequestLogConfig):
        self.config = config
        self.dir = Path(config.dir)
        self.dropped = 0
        self.written = 0
        self._records: deque[tuple[str, dict]] = deque()  # (table, record)
        self._feedback: deque[tuple[dict, concurrent.futures.Future]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._con: sqlite3.Connection | None = None
        self._created = 0.0
        self._salt = b""
        self._recent: OrderedDict[str, tuple] = OrderedDict()  # request id → (model that answered, router)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Open (or create) the current segment and start the writer thread.

        Raises:
            ConfigError: the directory cannot be used, or the salt variable is unset.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._salt = self._load_salt()
            con = self._open()  # fail here, in the caller, rather than in the thread
            con.close()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"log.dir {self.dir}: cannot open the request log: {exc}") from None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="routerzoo-request-log", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Write everything queued, close the database (checkpointing the WAL), stop the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _load_salt(self) -> bytes:
        if self.config.prompts != "hash":
            return b""
        if self.config.salt_env:
            value = os.environ.get(self.config.salt_env, "")
            if not value:
                raise ConfigError(f"log.salt_env: environment variable {self.config.salt_env} is unset or empty")
            return value.encode()
        path = self.dir / SALT_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
        return path.read_text().strip().encode()

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.dir / CURRENT, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, so acknowledged feedback survives a crash or power cut
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=5000")  # a user's reader never makes the writer fail
        con.execute("BEGIN")
        for stmt in SCHEMA:
            con.execute(stmt)
        now = time.time()
        con.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                        [("schema_version", str(SCHEMA_VERSION)), ("prompts", self.config.prompts),
                         ("created", repr(now))])
        con.execute("COMMIT")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("prompts") != self.config.prompts:
            # one prompt mode per segment, so a reader knows what it holds: start a new segment
            con.close()
            self._rotate_file()
            return self._open()
        self._created = float(meta.get("created", now))
        return con

    # -- request path ------------------------------------------------------------------------------
    def log(self, record: dict) -> bool:
        """Queue one request's record for writing; never blocks. False (and counted) when the queue is full."""
        return self._queue("requests", record)

    def log_shadow(self, record: dict) -> bool:
        """Queue a challenger's shadow decision (``SHADOW_COLUMNS``); never blocks."""
        return self._queue("shadow", record)

    def _queue(self, table: str, record: dict) -> bool:
        with self._cv:
            if len(self._records) >= self.config.queue_size or self._stopping:
                self.dropped += 1
                return False
            self._records.append((table, record))
        return True

    def add_feedback(self, entry: dict) -> concurrent.futures.Future:
        """Queue validated feedback; the future resolves to the stored row once committed.

        Args:
            entry: ``request_id``, ``source``, and either ``reward`` or ``other_request_id`` +
                ``winner`` (checked by :func:`parse_feedback`).

        The future raises :class:`FeedbackRefused` for an unknown request id or a duplicate.
        """
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._stopping:
                fut.set_exception(FeedbackRefused(503, "the server is shutting down", code="shutting_down"))
                return fut
            self._feedback.append((entry, fut))
            self._cv.notify()
        return fut

    # -- writer thread -----------------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        try:
            self._con = self._open()
        finally:
            ready.set()
        while True:
            with self._cv:
                if not (self._stopping or self._feedback):
                    self._cv.wait(self.config.flush_interval_s)
                records = list(self._records)
                self._records.clear()
                feedback = list(self._feedback)
                self._feedback.clear()
                stopping = self._stopping
            try:
                self._write(records, feedback)
                self._maybe_rotate()
            except Exception:  # noqa: BLE001 - the log must never take the server down
                log.exception("request log: writing %d record(s) failed; they are lost", len(records))
                self.dropped += len(records)
                for _, fut in feedback:
                    if not fut.done():
                        fut.set_exception(RuntimeError("the feedback store could not write"))
            if stopping:
                break
        try:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._con.close()
        except sqlite3.Error:
            log.exception("request log: closing the database failed (it stays readable; the WAL is replayed)")

    def _row(self, rec: dict) -> tuple:
        text = rec.pop("text", None)
        mode = self.config.prompts
        rec["prompt"] = text if mode == "full" else None
        rec["prompt_hash"] = (hashlib.sha256(self._salt + text.encode("utf-8")).hexdigest()
                              if mode == "hash" and text is not None else None)
        out = []
        for col in REQUEST_COLUMNS:
            v = rec.get(col)
            if col in _JSON_COLUMNS and v is not None:
                v = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
            elif col == "stream" and v is not None:
                v = int(bool(v))
            out.append(v)
        return tuple(out)

    def _write(self, records: list[dict], feedback: list) -> None:
        con = self._con
        requests = [r for t, r in records if t == "requests"]
        shadow = [r for t, r in records if t == "shadow"]
        if records:
            rows = [self._row(r) for r in requests]
            con.execute("BEGIN")
            con.executemany(f"INSERT OR REPLACE INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(REQUEST_COLUMNS))})", rows)
            con.executemany(f"INSERT INTO shadow ({', '.join(SHADOW_COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(SHADOW_COLUMNS))})",
                            [tuple(json.dumps(r[c], separators=(",", ":")) if c == "scores" else r.get(c)
                                   for c in SHADOW_COLUMNS) for r in shadow])
            con.execute("COMMIT")
            self.written += len(rows)
            for r in requests:
                self._recent[r["request_id"]] = (r.get("model"), r.get("router"))
            while len(self._recent) > self.config.max_tracked:
                self._recent.popitem(last=False)
        for entry, fut in feedback:
            if fut.done():
                continue
            try:
                fut.set_result(self._store_feedback(entry))
            except FeedbackRefused as exc:
                fut.set_exception(exc)

    def _known(self, rid: str) -> bool:
        if rid in self._recent:
            return True
        if self._con.execute("SELECT 1 FROM requests WHERE request_id = ?", (rid,)).fetchone():
            return True
        for seg in reversed(segment_files(self.dir)[:-1]):
            con = sqlite3.connect(f"file:{seg.resolve()}?mode=ro", uri=True)
            try:
                if con.execute("SELECT 1 FROM requests WHERE request_id = ?", (rid,)).fetchone():
                    return True
            finally:
                con.close()
        return False

    def _store_feedback(self, entry: dict) -> dict:
        rid = entry["request_id"]
        for key in ("request_id", "other_request_id"):
            if entry.get(key) is not None and not self._known(entry[key]):
                raise FeedbackRefused(404, f"no logged request {entry[key]!r} (unknown, not yet answered, or rotated away)",
                                      param=key, code="unknown_request_id")
        kind = "reward" if entry.get("reward") is not None else "preference"
        dup = self._con.execute("SELECT 1 FROM feedback WHERE request_id = ? AND kind = ? AND source = ? "
                                "AND coalesce(other_request_id, '') = ?",
                                (rid, kind, entry["source"], entry.get("other_request_id") or "")).fetchone()
        if dup:
            raise FeedbackRefused(409, f"request {rid!r} already has {kind} feedback from {entry['source']}",
                                  code="duplicate_feedback")
        row = {"time": time.time(), "request_id": rid, "kind": kind, "reward": entry.get("reward"),
               "other_request_id": entry.get("other_request_id"), "winner": entry.get("winner"),
               "source": entry["source"]}
        con = self._con
        con.execute("BEGIN")
        cur = con.execute("INSERT INTO feedback (time, request_id, kind, reward, other_request_id, winner, source) "
                          "VALUES (:time, :request_id, :kind, :reward, :other_request_id, :winner, :source)", row)
        con.execute("COMMIT")  # synchronous=FULL: on disk before the caller acknowledges it
        model, version = self._recent.get(rid) or self._lookup(rid)
        return {"id": cur.lastrowid, **row, "model": model, "version": version}

    def _lookup(self, rid: str) -> tuple:
        """(model, router) of a request no longer remembered, from the current segment (else unknown)."""
        found = self._con.execute("SELECT model, router FROM requests WHERE request_id = ?", (rid,)).fetchone()
        return tuple(found) if found else (None, None)

    # -- rotation ------------------------------------------------------------------------------------
    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += (self.dir / (CURRENT + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def _maybe_rotate(self) -> None:
        cfg = self.config
        too_big = self._size() >= cfg.max_segment_mb * 1024 * 1024
        too_old = cfg.max_segment_age_h > 0 and time.time() - self._created >= cfg.max_segment_age_h * 3600
        if not (too_big or too_old):
            return
        self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._con.close()
        self._rotate_file()
        self._con = self._open()

    def _rotate_file(self) -> None:
        """Rename the current segment to the next number; delete the oldest beyond ``keep_segments``."""
        rotated = segment_files(self.dir)[:-1]
        last = int(_SEGMENT.match(rotated[-1].name).group(1)) if rotated else 0
        target = self.dir / f"requests.{last + 1:06d}.db"
        # after a clean close the WAL is gone; one left by a reader still open belongs to the old file
        (self.dir / (CURRENT + "-shm")).unlink(missing_ok=True)
        wal = self.dir / (CURRENT + "-wal")
        os.replace(self.dir / CURRENT, target)
        if wal.exists():
            os.replace(wal, target.with_name(target.name + "-wal"))
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        rotated = segment_files(self.dir)
        for old in rotated[: max(0, len(rotated) - self.config.keep_segments)]:
            for p in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
                p.unlink(missing_ok=True)
        log.info("request log: rotated into %s", target.name)


def parse_feedback(payload) -> dict:
    """Check a ``POST /v1/feedback`` body; the entry for :meth:`RequestLog.add_feedback`.

    Accepted bodies::

        {"request_id": "…", "reward": 0.8, "source": "client"}
        {"request_id": "…", "other_request_id": "…", "winner": "a", "source": "judge"}

    ``winner``: ``a`` = the response of ``request_id`` was better, ``b`` = that of
    ``other_request_id``, ``tie``. ``source`` defaults to ``client``.

    Raises:
        FeedbackRefused: status 400 naming the field.
    """
    if not isinstance(payload, dict):
        raise FeedbackRefused(400, "the request body must be a JSON object with request_id and reward (or winner)",
                              param=None)
    known = {"request_id", "reward", "other_request_id", "winner", "source"}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise FeedbackRefused(400, f"unknown field(s) {unknown}; use {sorted(known)}", param=unknown[0])
    rid = payload.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise FeedbackRefused(400, "request_id must be the x-routerzoo-request-id of an answered request")
    source = payload.get("source", "client")
    if source not in FEEDBACK_SOURCES:
        raise FeedbackRefused(400, f"source must be one of {list(FEEDBACK_SOURCES)}, got {source!r}", param="source")
    reward, other, winner = payload.get("reward"), payload.get("other_request_id"), payload.get("winner")
    if reward is not None:
        if other is not None or winner is not None:
            raise FeedbackRefused(400, "give a reward, or other_request_id and winner, not both", param="reward")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward) \
                or not 0 <= reward <= 1:
            raise FeedbackRefused(400, f"reward must be a number in [0, 1], got {reward!r}", param="reward")
        return {"request_id": rid, "reward": float(reward), "source": source}
    if other is None and winner is None:
        raise FeedbackRefused(400, "give a reward in [0, 1], or other_request_id and winner", param="reward")
    if not isinstance(other, str) or not other or other == rid:
        raise FeedbackRefused(400, "other_request_id must be the request id of the other response", param="other_request_id")
    if winner not in WINNERS:
        raise FeedbackRefused(400, f"winner must be one of {list(WINNERS)}, got {winner!r}", param="winner")
    return {"request_id": rid, "other_request_id": other, "winner": winner, "source": source}
