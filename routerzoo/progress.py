"""Progress of long work: a bar on a terminal, a plain line every so often anywhere else.

Why two forms: a tqdm bar redraws one line with carriage returns, which is right on a terminal and
unreadable in a CI log, ``nohup`` output or a captured stderr; printing nothing there is worse (a
2.5-minute kNN training used to print nothing until its final table). So a run whose stderr is not
a terminal gets ``lines``: one line when a step starts, one every :data:`INTERVAL` seconds while it
runs, one when it ends, each with its count and elapsed time (the way pip and Lightning's plain
loggers report to files).

Modes: ``"bar"``, ``"lines"``, ``"off"``; :func:`mode` maps the ``progress`` argument of the
training functions (``None``: bar on a terminal or in a notebook, lines elsewhere; ``True``/``False``)
to one of them.
This module imports nothing heavy: the server and the routers may use it.
"""

from __future__ import annotations

import os
import sys
import time

#: Seconds between two progress lines of one step (``ROUTERZOO_PROGRESS_INTERVAL`` overrides).
INTERVAL = 30.0
MODES = ("bar", "lines", "off")


def mode(progress: bool | str | None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"`` for a ``progress`` argument (None: bar on a terminal, else lines)."""
    if progress is None:
        # a notebook's stderr is no terminal, yet tqdm.auto draws a widget there
        return "bar" if sys.stderr.isatty() or "ipykernel" in sys.modules else "lines"
    if progress is True:
        return "bar"
    if progress is False:
        return "off"
    if progress in MODES:
        return str(progress)
    raise ValueError(f"progress must be None, a bool or one of {MODES}, got {progress!r}")


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ROUTERZOO_PROGRESS_INTERVAL", INTERVAL)))
    except ValueError:
        return INTERVAL


class LineProgress:
    """A tqdm-like counter (``update``, ``set_description``, ``close``, ``n``) that prints plain lines.

    Lines go to stderr: at the start, at most every :func:`interval` seconds on ``update``, and at
    ``close`` (with the total elapsed time).
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", file=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self._file = file
        self._start = self._last = time.monotonic()
        self._closed = False
        self._print("started")

    def _print(self, what: str) -> None:
        out = self._file or sys.stderr
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        print(f"{self.desc}: {count} {self.unit}s, {time.monotonic() - self._start:.0f} s ({what})", file=out, flush=True)

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self._last >= interval():
            self._last = now
            self._print("running")

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print("done")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Off:
    n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def bar(total: int | None, desc: str, unit: str = "it", progress: bool | str | None = None):
    """A progress counter for ``total`` units of work in the given mode (see :func:`mode`)."""
    m = mode(progress)
    if m == "off":
        return _Off()
    if m == "lines":
        return LineProgress(total, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)
