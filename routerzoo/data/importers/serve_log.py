"""``serve-log``: the request log of ``routerzoo serve`` and its feedback (``docs/request-log.md``).

Input: a log directory (the ``log.dir`` of the serve config: ``requests.db`` and rotated segments
``requests.NNNNNN.db``) or single segment files. Every segment is read (read-only, so a running
server may keep writing) and feedback is joined to the requests it names across segments.

* **Outcomes** where rewards exist: one row per rewarded (prompt, answering model); quality = the
  reward (several rewards of the same prompt and model, from clients or a judge, are averaged and
  counted in the notes), cost = the logged cost (when the server knew no price: tokens x the
  model's list price, ``--prices``), input / output tokens as logged.
* **A prompt list** (``routerzoo data import LOG --format serve-log --prompts-out prompts.jsonl``,
  :func:`prompt_list`): every distinct logged prompt as a ``data generate`` question, to replay on
  the candidates and have a judge rate (``--scorer judge``): outcomes for the models the router did
  not choose, with the ids this import gives the prompts.
* **Pairs** where preferences exist: ``request_id`` and ``other_request_id`` must carry the same
  prompt and have been answered by different models; ``model_a`` answered ``request_id``.

Only answered requests (status 2xx) count. A log kept with ``prompts: off`` or ``hash`` has no
texts to train on and is refused (segments of such a mode beside ``full`` ones are skipped with a
note). Feedback naming a request no longer in the log (rotated away) is skipped and counted.
A feedback row that cannot be used (a preference between two different prompts, or between two
answers of one model) is an error naming the segment, the feedback id as ``row`` and the field;
``--on-invalid skip`` leaves such rows out.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from routerzoo.data.importers._common import (
    ImportOptions,
    ImportResult,
    expand_paths,
    fill_costs,
    source_entry,
    text_id,
)
from routerzoo.data.prices import PriceTable
from routerzoo.data.request_log_format import SCHEMA_VERSION, read_meta
from routerzoo.errors import DataError, UserError

NAME = "serve-log"
SUMMARY = "the request log of routerzoo serve (log: section) with its rewards and preferences"

_REQUESTS = ("SELECT request_id, prompt, model, cost, input_tokens, output_tokens FROM requests "
             "WHERE status BETWEEN 200 AND 299 AND model IS NOT NULL AND prompt IS NOT NULL")
_FEEDBACK = "SELECT id, request_id, kind, reward, other_request_id, winner, source FROM feedback ORDER BY id"


def _segments(paths) -> list[Path]:
    files = expand_paths(paths, (".db",), "request log (requests.db)")
    return sorted(files, key=lambda p: (p.parent, p.name == "requests.db", p.name))


def _read_segment(path: Path) -> tuple[dict, list[tuple], list[tuple]]:
    try:
        meta = read_meta(path)
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            requests = con.execute(_REQUESTS).fetchall()
            feedback = con.execute(_FEEDBACK).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise DataError(f"not a routerzoo request log ({exc})", file=str(path)) from None
    version = int(meta.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise UserError(f"{path}: request log schema version {version} is newer than this routerzoo reads "
                        f"({SCHEMA_VERSION}); upgrade routerzoo")
    return meta, requests, feedback


def _refuse_without_texts(files: list[Path], skipped_modes: dict, what: str = "to train on") -> None:
    if len(skipped_modes) and sum(skipped_modes.values()) == len(files):
        mode = next(iter(skipped_modes))
        raise UserError(f"{files[0].parent}: the request log was kept with prompts: {mode}, so it holds no prompt "
                        f"texts {what}; set log.prompts: full in the serve config and collect traffic again")


def prompt_list(paths) -> tuple[list[dict], int]:
    """The distinct prompt texts of the answered requests in a log, as ``data generate`` questions.

    Each is ``{"id": ..., "question": ...}`` with the id the import gives the prompt (so outcomes
    generated from the list join the imported ones), in the order first logged.

    Returns:
        (the questions, the number of feedback rows in the log).

    Raises:
        UserError: the log was kept without prompt texts (``prompts: off`` or ``hash``).
    """
    files = _segments(paths)
    seen: dict[str, None] = {}
    skipped_modes: dict[str, int] = {}
    n_feedback = 0
    for path in files:
        meta, reqs, fb = _read_segment(path)
        mode = meta.get("prompts", "off")
        if mode != "full":
            skipped_modes[mode] = skipped_modes.get(mode, 0) + 1
        n_feedback += len(fb)
        seen.update((row[1], None) for row in reqs)
    _refuse_without_texts(files, skipped_modes, "to replay")
    return [{"id": text_id(p), "question": p} for p in seen], n_feedback


def read(paths, options: ImportOptions) -> ImportResult:
    files = _segments(paths)
    requests: dict[str, tuple] = {}  # request id → (prompt, model, cost, tokens in, tokens out)
    feedback: list[tuple] = []  # (file, row) + feedback columns
    sources, skipped_modes = [], {}
    for path in files:
        meta, reqs, fb = _read_segment(path)
        mode = meta.get("prompts", "off")
        sources.append(source_entry(path, records=len(reqs), feedback=len(fb), prompts=mode))
        if mode != "full":
            skipped_modes[mode] = skipped_modes.get(mode, 0) + 1
        for rid, *rest in reqs:
            requests[rid] = tuple(rest)
        feedback += [(str(path), *row) for row in fb]
    _refuse_without_texts(files, skipped_modes)
    outcome_rows, pair_rows = [], []
    unknown = 0
    for file, fid, rid, feedback_type, reward, other, winner, source in feedback:
        if (file, fid) in options.skip:
            continue
        a = requests.get(rid)
        b = requests.get(other) if other is not None else None
        if a is None or (feedback_type == "preference" and b is None):
            unknown += 1  # rotated away, not answered, or logged without text
            continue
        if feedback_type == "reward":
            outcome_rows.append({"prompt": a[0], "model": a[1], "quality": float(reward), "cost": a[2],
                                 "input_tokens": a[3], "output_tokens": a[4], "source": source,
                                 "_file": file, "_row": fid})
            continue
        if a[0] != b[0]:
            raise DataError(f"preference between requests {rid!r} and {other!r}, whose prompts differ",
                            file=file, row=fid, field="other_request_id")
        if a[1] == b[1]:
            raise DataError(f"preference between two answers of the same model {a[1]!r}; nothing to route between",
                            file=file, row=fid, field="other_request_id")
        pair_rows.append({"prompt_id": text_id(a[0]), "prompt": a[0], "model_a": a[1], "model_b": b[1],
                          "winner": winner, "weight": 1.0, "_file": file, "_row": fid})
    if not outcome_rows and not pair_rows:
        raise DataError(f"no feedback on logged requests ({len(feedback)} feedback row(s), {len(requests)} answered "
                        "request(s) with prompt text); send POST /v1/feedback with rewards or preferences",
                        file=str(files[0]))
    notes = [f"serve-log: {len(requests)} answered request(s), {len(feedback)} feedback row(s) from {len(files)} segment(s)"]
    if skipped_modes:
        notes.append("skipped segment(s) without prompt texts: "
                     + ", ".join(f"{n} with prompts: {m}" for m, n in sorted(skipped_modes.items())))
    if unknown:
        notes.append(f"{unknown} feedback row(s) name requests not in the log (rotated away or unanswered); skipped")
    table = PriceTable(options.prices)
    outcomes = _outcomes(outcome_rows, table, notes) if outcome_rows else None
    prefs = pd.DataFrame(pair_rows) if pair_rows else None
    if prefs is not None:
        notes.append(f"{len(prefs)} preference pair(s) over {prefs['prompt_id'].nunique()} prompt(s)")
    return ImportResult(outcomes=outcomes, preferences=prefs, sources=sources, prices=table.used(), notes=notes)


def _outcomes(rows: list[dict], table: PriceTable, notes: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["prompt_id"] = [text_id(t) for t in df["prompt"]]
    for col in ("cost", "input_tokens", "output_tokens"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    need = int(df["cost"].isna().sum())
    df = fill_costs(df, table)
    if need:
        notes.append(f"{need} cost(s) computed as tokens x list price (the server knew no price)")
    sources = df["source"].value_counts().to_dict()
    # a prompt answered by one model several times, or rated by client and judge: one outcome, averaged
    grouped = df.groupby(["prompt_id", "model"], sort=False)
    out = grouped.agg(prompt=("prompt", "first"), quality=("quality", "mean"), cost=("cost", "mean"),
                      input_tokens=("input_tokens", "mean"), output_tokens=("output_tokens", "mean"),
                      _file=("_file", "first"), _row=("_row", "first"), n=("quality", "size")).reset_index()
    merged = int((out["n"] > 1).sum())
    notes.append(f"{len(out)} outcome(s) from {len(df)} reward(s) ({json.dumps(sources, sort_keys=True)}) over "
                 f"{out['prompt_id'].nunique()} prompt(s) and {out['model'].nunique()} model(s)")
    if merged:
        notes.append(f"{merged} outcome(s) average several rewards of the same prompt and model")
    out = out.drop(columns="n")
    for col in ("input_tokens", "output_tokens"):
        out[col] = out[col].round()
    out["quality"] = np.clip(out["quality"].to_numpy(), 0.0, 1.0)
    return out
