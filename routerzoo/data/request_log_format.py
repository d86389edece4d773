"""The request log's on-disk format: SQLite segments written by ``routerzoo serve`` (the ``log:``
section, :mod:`routerzoo.serving.request_log`) and read by ``routerzoo data import --format
serve-log``. Standard library only, so the data layer reads the log without importing the server.
See docs/request-log.md for each column.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
PROMPT_MODES = ("off", "hash", "full")
FEEDBACK_SOURCES = ("client", "judge")
WINNERS = ("a", "b", "tie")
CURRENT = "requests.db"
SALT_FILE = "salt"
_SEGMENT = re.compile(r"^requests\.(\d{6})\.db$")

# one statement per table; docs/request-log.md documents each column
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        time REAL NOT NULL,
        endpoint TEXT,
        requested_model TEXT,
        router TEXT,
        router_version TEXT,
        scores TEXT,
        chosen TEXT,
        model TEXT,
        fallbacks TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cost REAL,
        latency_ms REAL,
        status INTEGER,
        stream INTEGER,
        prompt_hash TEXT,
        prompt TEXT,
        extra TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS requests_time ON requests(time)",
    """CREATE TABLE IF NOT EXISTS feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('reward', 'preference')),
        reward REAL CHECK (reward IS NULL OR (reward >= 0 AND reward <= 1)),
        other_request_id TEXT,
        winner TEXT CHECK (winner IS NULL OR winner IN ('a', 'b', 'tie')),
        source TEXT NOT NULL CHECK (source IN ('client', 'judge'))
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id)",
    """CREATE TABLE IF NOT EXISTS shadow (
        request_id TEXT NOT NULL,
        time REAL NOT NULL,
        router TEXT NOT NULL,
        chosen TEXT,
        agree INTEGER,
        scores TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS shadow_request ON shadow(request_id)",
)
REQUEST_COLUMNS = ("request_id", "time", "endpoint", "requested_model", "router", "router_version", "scores",
                   "chosen", "model", "fallbacks", "input_tokens", "output_tokens", "cost", "latency_ms",
                   "status", "stream", "prompt_hash", "prompt", "extra")
SHADOW_COLUMNS = ("request_id", "time", "router", "chosen", "agree", "scores")


def segment_files(directory: str | os.PathLike) -> list[Path]:
    """The log's database files, oldest first: rotated segments by number, then the current one."""
    d = Path(directory)
    rotated = sorted((p for p in d.glob("requests.*.db") if _SEGMENT.match(p.name)), key=lambda p: p.name)
    current = d / CURRENT
    return rotated + ([current] if current.exists() else [])


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` table of one segment (schema version, prompt mode, creation time), read-only."""
    con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    finally:
        con.close()


