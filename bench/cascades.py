"""Cascades, deferral scorers and the MDP router against one-shot λ-argmax routers, on real tables.

For each dataset (the bundled MMLU-Pro sample, 15 models × 1,501 questions with responses; and
RouteLLM's GSM8K cache, Mixtral → GPT-4 with responses, when its CSV is given), restricted to a
chain of models (cheapest first) and split train / val / test (seed 0):

* every trainable deferral scorer that works on the table is trained on train (for the chain's
  first model) and scored on test: AUROC of answer correctness (bootstrap 95% CI over answers) and
  the deferral curve's AUC next to the random and oracle orders;
* each scorer's cascade is run on test at every threshold: AIQ, gap closed, cascade-routing AUC;
* kNN and MLP λ-argmax routers trained on the same models give the one-shot reference;
* a cascade calibrated on val to the midpoint cost of the chain's single models: realised test cost;
* the MDP router trained at several cost weights: its points evaluated like a cascade's.

No table here has token logprobs (none is public; ``routerzoo data generate`` would make one from a
live model), so the logprob scorers are not benchmarked; consistency needs k samples per answer,
which these tables do not have either.

    nice -n 10 python bench/cascades.py --workdir /tmp/cascades [--gsm8k PATH/gsm8k_responses.csv] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def restricted(ds_path: Path, models: list[str], out: Path, name: str) -> Path:
    """The dataset with only ``models``'s outcomes, split as the source was (same prompts, same spec)."""
    from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    if out.exists():
        return out
    ds = load_dataset(ds_path)
    df = ds.outcomes[ds.outcomes["model"].isin(models)].drop(columns=["split"])
    return save_dataset(make_dataset(df, name=name, split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True),
                                     prices=ds.manifest.get("prices")), out)


def bootstrap_auroc(scores, labels, b: int, seed: int = 0):
    from routerzoo.evaluation.deferral import auroc

    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(b):
        idx = rng.integers(0, len(scores), len(scores))
        v = auroc(scores[idx], labels[idx])
        if v is not None:
            vals.append(v)
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))] if vals else None


def bench_dataset(name: str, data: Path, chain: list[str], workdir: Path, bootstrap: int, mdp_lambdas: int) -> dict:
    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.deferral import auroc
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.evaluation.sequential import cascade_curve, evaluate_sequential, run_offline
    from routerzoo.routers.deferral.posthoc import PostHocDeferralConfig
    from routerzoo.routers.deferral.prompt_response import PromptResponseConfig
    from routerzoo.routers.deferral.token_quantile import answers_for_training
    from routerzoo.routers.policies.mdp import MDPConfig
    from routerzoo.training.calibrate import Target
    from routerzoo.training.calibrate_cascade import calibrate_cascade
    from routerzoo.training.mdp import train_mdp
    from routerzoo.training.train import TrackingConfig, train_router
    from routerzoo.training.train_deferral import train_deferral

    ds = load_dataset(data)
    test, val = ds.outcome_matrix("test").select_models(chain), ds.outcome_matrix("val").select_models(chain)
    out: dict = {"dataset": name, "chain": chain, "n_test": len(test), "scorers": {}, "cascades": {}, "routers": {}}
    singles = {m: {"quality": float(np.nanmean(test.quality[:, j])), "cost": float(np.nanmean(test.cost[:, j]))}
               for j, m in enumerate(chain)}
    out["single_models"] = singles
    print(f"\n== {name}: chain {' -> '.join(chain)}, test n={len(test)}", flush=True)
    for m, s in singles.items():
        print(f"   single {m}: quality {s['quality']:.3f}, cost ${s['cost']:.3g}")

    # -- one-shot routers ---------------------------------------------------------------------------
    for kind in ("knn", "mlp"):
        t0 = time.perf_counter()
        res = train_router(kind, None, data, workdir / f"{name}-{kind}", tracking=TrackingConfig(enabled=False),
                           progress=False, overwrite=True)
        rep = evaluate_router(res.router, ds, "test")
        out["routers"][kind] = {"aiq": rep["aiq"]["router"], "gap_closed": rep["gap_closed"],
                                "cascade_auc": rep.get("cascade_auc"), "fit_s": time.perf_counter() - t0}
        print(f"   router {kind}: AIQ {rep['aiq']['router']:.4f}, gap closed {rep['gap_closed']}, "
              f"cascade AUC {rep.get('cascade_auc')}", flush=True)

    # -- deferral scorers and their cascades --------------------------------------------------------------
    configs = {"prompt-response": PromptResponseConfig(model=chain[0]),
               "posthoc-deferral": PostHocDeferralConfig(model=chain[0], next_model=chain[1])}
    best = None
    for kind, cfg in configs.items():
        t0 = time.perf_counter()
        scorer, _, metrics = train_deferral(kind, cfg, data, workdir / f"{name}-{kind}", next_model=chain[1], overwrite=True)
        _, _, prompts, responses, lps, q = answers_for_training(test, chain[0])
        s = scorer.predict(prompts, responses, lps)
        row = {"auroc": auroc(s, q >= 0.5), "auroc_ci": bootstrap_auroc(s, q >= 0.5, bootstrap),
               **{k: metrics["test"].get(k) for k in ("deferral_auc", "random_auc", "oracle_auc")},
               "fit_s": metrics["fit_s"]}
        pts = cascade_curve(scorer, chain, test, n_points=32)
        rep = evaluate_sequential(pts, test, chain)
        casc = {"aiq": rep["aiq"]["router"], "gap_closed": rep["gap_closed"], "cascade_auc": rep["cascade_auc"],
                "aiq_zero": rep["aiq"]["zero_router"], "aiq_oracle": rep["aiq"]["oracle"]}
        out["scorers"][kind], out["cascades"][kind] = row, casc
        print(f"   scorer {kind}: AUROC {row['auroc']:.3f} CI {row['auroc_ci']}, deferral AUC {row['deferral_auc']:.4f} "
              f"(random {row['random_auc']:.4f}, oracle {row['oracle_auc']:.4f}); {time.perf_counter() - t0:.0f}s", flush=True)
        print(f"   cascade[{kind}]: AIQ {casc['aiq']:.4f} (zero {casc['aiq_zero']:.4f}, oracle {casc['aiq_oracle']}), "
              f"gap closed {casc['gap_closed']}, cascade AUC {casc['cascade_auc']}", flush=True)
        if best is None or casc["aiq"] > out["cascades"][best[0]]["aiq"]:
            best = (kind, scorer)

    # -- calibrated cascade: target the midpoint cost on val, realised on test ----------------------------
    lo, hi = min(s["cost"] for s in singles.values()), max(s["cost"] for s in singles.values())
    target = Target("cost", (lo + hi) / 2)
    cal = calibrate_cascade(best[1], chain, val, target, test_matrix=test)
    out["calibrated"] = {"scorer": best[0], **cal.to_dict()}
    print(f"   calibrated cascade[{best[0]}] target ${target.value:.4g}: val ${cal.calibration.cost:.4g} "
          f"(q {cal.calibration.quality:.3f}), test ${cal.test.cost:.4g} (q {cal.test.quality:.3f}), "
          f"rel. error {cal.to_dict()['test_relative_error']:+.2%}", flush=True)

    # -- MDP router over λ ------------------------------------------------------------------------------
    if mdp_lambdas:
        qr = max(s["quality"] for s in singles.values()) - min(s["quality"] for s in singles.values())
        scale = max(qr, 0.05) / max(hi - lo, 1e-12)
        points = []
        for f in [0.0, *np.geomspace(0.1, 10.0, mdp_lambdas - 1).tolist()]:
            t0 = time.perf_counter()
            pol, _, _ = train_mdp(MDPConfig(models=chain, cost_weight=f * scale, epochs=20, max_calls=min(3, len(chain))),
                                  data, workdir / f"{name}-mdp-{f:.3g}", overwrite=True)
            r = run_offline(pol, test)
            k = r["known"]
            points.append({"threshold": f * scale, "cost": float(r["cost"][k].mean()), "quality": float(r["quality"][k].mean()),
                           "n_unscored": int((~k).sum()), "calls_per_prompt": float(r["n_calls"][k].mean())})
            print(f"   mdp λ={f * scale:.4g}: cost ${points[-1]['cost']:.4g}, quality {points[-1]['quality']:.3f}, "
                  f"{points[-1]['calls_per_prompt']:.2f} calls; {time.perf_counter() - t0:.0f}s", flush=True)
        rep = evaluate_sequential(points, test, chain)
        out["mdp"] = {"points": points, "aiq": rep["aiq"]["router"], "gap_closed": rep["gap_closed"],
                      "cascade_auc": rep["cascade_auc"]}
        print(f"   mdp: AIQ {rep['aiq']['router']:.4f}, gap closed {rep['gap_closed']}, cascade AUC {rep['cascade_auc']}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--gsm8k", help="RouteLLM gsm8k_responses.csv (skipped when absent)")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--mdp-lambdas", type=int, default=4, help="cost weights the MDP router is trained at (0: skip)")
    p.add_argument("--three-stage", action="store_true", help="also the Llama-3.1-8B -> flash -> pro chain on MMLU-Pro")
    p.add_argument("--json", dest="json_out")
    args = p.parse_args(argv)
    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec
    from routerzoo.demo import sample_dir

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    full = work / "mmlu-pro-sample"
    if not full.exists():
        ds = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="mmlu-pro-sample",
                          split=SplitSpec(val=0.15, test=0.3, seed=0, stratify=True))
        save_dataset(ds, full)
    chains = [["gemini-1.5-flash-002", "gemini-1.5-pro-002"]]
    if args.three_stage:
        chains.append(["Meta-Llama-3_1-8B-Instruct", "gemini-1.5-flash-002", "gemini-1.5-pro-002"])
    for chain in chains:
        tag = f"mmlu-{len(chain)}"
        data = restricted(full, chain, work / tag, tag)
        results.append(bench_dataset(tag, data, chain, work, args.bootstrap, args.mdp_lambdas))
    if args.gsm8k and Path(args.gsm8k).is_file():
        g = work / "gsm8k"
        if not g.exists():
            save_dataset(import_files([args.gsm8k], "routellm", name="gsm8k",
                                      split=SplitSpec(val=0.15, test=0.3, seed=0)), g)
        chain = ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
        results.append(bench_dataset("gsm8k", g, chain, work, args.bootstrap, args.mdp_lambdas))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x))
    return 0


if __name__ == "__main__":
    sys.exit(main())
