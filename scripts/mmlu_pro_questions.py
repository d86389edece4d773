"""Write N MMLU-Pro questions (with options and gold letter) as JSONL for ``routerzoo data generate``.

Reads the TIGER-AI-Lab/MMLU-Pro eval_results zips with the ``mmlu-pro`` importer's own reader and
keeps the questions that every model's file holds with the same text, so each question's id is the
plain ``question_id`` the importer gives it and the generated model's outcomes join the 15 models'
(same prompt_id and prompt text; ``routerzoo data split`` assigns splits by prompt id, so they agree
too). N questions are picked by a seeded hash of the id (deterministic, roughly proportional to the
categories). Usage:

    python scripts/mmlu_pro_questions.py ../shared/data/mmlu-pro/eval_results questions.jsonl --n 300
    routerzoo data generate --questions questions.jsonl --endpoint http://127.0.0.1:8080 \\
        --model SmolLM2-135M-Instruct --out data/smollm2-mmlu-pro --max-tokens 512
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from routerzoo.data.importers._common import expand_paths, parse_json_document
from routerzoo.data.importers.mmlu_pro import _json_members


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="+", type=Path, help="eval_results zips or directories holding them")
    ap.add_argument("out", type=Path, help="JSONL file to write")
    ap.add_argument("--n", type=int, default=300, help="questions to write (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists():
        sys.exit(f"{args.out} exists; remove it first")
    texts: dict[str, set] = {}
    records: dict[str, dict] = {}
    counts: dict[str, int] = {}
    n_files = 0
    for path in expand_paths(args.src, (".zip",), "MMLU-Pro eval_results .zip"):
        for label, _member, raw in _json_members(path):
            n_files += 1
            for rec in parse_json_document(raw.decode("utf-8-sig"), label):
                if not isinstance(rec, dict) or "question_id" not in rec:
                    continue
                qid = str(rec["question_id"]).strip()
                counts[qid] = counts.get(qid, 0) + 1
                texts.setdefault(qid, set()).add((rec["question"], tuple(rec["options"])))
                records.setdefault(qid, rec)
    # only questions every file holds, with one text (their prompt_id is the plain question_id)
    keep = [q for q in records if counts[q] == n_files and len(texts[q]) == 1]
    # a key of its own: the split hash is sha256("<seed>:<id>"), and picking by it would put every
    # chosen question in the test split
    keep.sort(key=lambda q: hashlib.sha256(f"questions:{args.seed}:{q}".encode()).hexdigest())
    chosen = sorted(keep[: args.n], key=lambda q: int(q) if q.isdigit() else q)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w") as fh:
        for qid in chosen:
            r = records[qid]
            fh.write(json.dumps({"id": qid, "question": r["question"], "options": r["options"], "answer": r["answer"],
                                 "category": r.get("category")}) + "\n")
    tmp.replace(args.out)
    print(f"wrote {len(chosen)} of {len(keep)} questions that all {n_files} file(s) hold with one text to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
