"""Build the MMLU-Pro demo sample bundled in routerzoo/resources/sample/mmlu-pro/.

Takes the staged TIGER-AI-Lab/MMLU-Pro eval_results zips, keeps the questions that every one of
the 15 models answered, picks N of them (the same share of each category, chosen by a seeded hash
of the question id, so the choice is deterministic), and writes one zip per model with the original
records unchanged and in the original file naming. Usage:

    python scripts/make_mmlu_pro_sample.py ../shared/data/mmlu-pro/eval_results routerzoo/resources/sample/mmlu-pro --n 1500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    records: dict[str, tuple[str, dict]] = {}
    for zpath in sorted(args.src.glob("model_outputs_*_5shots.zip")):
        with zipfile.ZipFile(zpath) as z:
            (inner,) = z.namelist()
            data = json.loads(z.read(inner))
        records[zpath.name] = (inner, {str(r["question_id"]): r for r in data if isinstance(r, dict)})
    common = set.intersection(*(set(recs) for _, recs in records.values()))
    first = next(iter(records.values()))[1]
    by_cat: dict[str, list[str]] = defaultdict(list)
    for qid in common:
        by_cat[first[qid]["category"]].append(qid)
    total = len(common)
    chosen: list[str] = []
    for _category, ids in sorted(by_cat.items()):
        ids.sort(key=lambda q: hashlib.sha256(f"sample:{q}".encode()).hexdigest())
        chosen += ids[: round(args.n * len(ids) / total)]
    chosen_set = set(chosen)
    args.out.mkdir(parents=True, exist_ok=True)
    for zname, (inner, recs) in records.items():
        keep = [r for qid, r in recs.items() if qid in chosen_set]
        with zipfile.ZipFile(args.out / zname, "w", compression=zipfile.ZIP_LZMA) as z:
            z.writestr(inner, json.dumps(keep, ensure_ascii=False))
    print(f"{len(chosen)} questions of {total} common to {len(records)} models → {args.out}")


if __name__ == "__main__":
    main()
