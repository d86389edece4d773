"""The ``routerzoo`` command line.

    routerzoo data import SRC... --format FORMAT --out DIR
    routerzoo data show DIR
    routerzoo data split DIR [--val F --test F --seed N --stratify]
    routerzoo train [KIND | --router KIND | --config FILE] --data DIR --out DIR [--router.FIELD VALUE ...]
    routerzoo eval ROUTER_DIR... --data DIR [--split test] [--json OUT.json] [--plot OUT.png]
    routerzoo calibrate | calibrate-cascade | assign | serve | zoo ...
    routerzoo routers
    routerzoo demo

One argparse parser holds every command; each command's handler imports what it needs when it runs
(a ``module:function`` reference for the heavy ones), so ``routerzoo serve`` never imports training
code. ``train`` hands the arguments after it to ``routerzoo.training.cli``, whose parser is built from
the kind's typed config.

User errors print one line and exit with status 2; nothing a user types produces a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from routerzoo.errors import UserError
from routerzoo.serving import cli as serving_cli
from routerzoo.zoo import cli as zoo_cli


def _add_split_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--val", type=float, default=0.1, help="fraction of prompts for validation (default 0.1)")
    p.add_argument("--test", type=float, default=0.2, help="fraction of prompts held out for testing (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--stratify", action="store_true", help="split each category in the same proportions")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routerzoo", description="Train, evaluate, register and serve LLM routers.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="import, inspect and split routing datasets", description="Import, inspect and split routing datasets.")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    imp = dsub.add_parser(
        "import", help="import benchmark outcomes or preference pairs into a dataset",
        description="Import files of a known format into a routerzoo dataset (Parquet + dataset.json).",
        epilog="Formats: see `routerzoo data formats`.",
    )
    imp.add_argument("sources", nargs="+", metavar="SRC", help="input files or directories")
    imp.add_argument("--format", required=True, help="input format (see `routerzoo data formats`)")
    imp.add_argument("--out", required=True, help="dataset directory to write")
    imp.add_argument("--prices", help="price file (YAML/JSON, $ per 1M input/output tokens per model)")
    imp.add_argument("--name", help="dataset name (default: the --out directory name)")
    imp.add_argument("--trust-pickle", action="store_true", help="allow RouterBench .pkl files (unpickling runs code: only for files you trust)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty (default: refuse)")
    imp.add_argument("--strict", action="store_true", help="unknown columns / fields are errors (default: ignored with a warning)")
    imp.add_argument("--prompts-out", metavar="FILE.jsonl",
                     help="serve-log only: also write every distinct logged prompt as `data generate` questions "
                          "(id, question), to replay on the candidates and judge; needs a log kept with prompts: full. "
                          "Without feedback in the log, only this list is written")
    imp.add_argument("--on-invalid", choices=["error", "skip"], default="error",
                     help="invalid records: stop at the first (error, default) or leave them out and list them in "
                          "DIR/rejects.csv (skip); broken files (truncated, bad JSON / CSV) always stop the import")
    _add_split_flags(imp)
    show = dsub.add_parser("show", help="summarise a dataset", description="Print a dataset's models, accuracy, cost, splits and oracle quality.")
    show.add_argument("dataset", help="dataset directory")
    split = dsub.add_parser("split", help="re-split a dataset", description="Assign new train/val/test splits (deterministic by prompt id).")
    split.add_argument("dataset", help="dataset directory (rewritten in place)")
    _add_split_flags(split)
    fmts = dsub.add_parser("formats", help="list import formats", description="List the formats `routerzoo data import` reads, or describe one.")
    fmts.add_argument("format", nargs="?", help="describe this format's input in full")
    from routerzoo.data import generate as data_generate  # argparse only: httpx is imported when it runs

    data_generate.add_parser(dsub)

    train = sub.add_parser("train", add_help=False, help="train any kind: a router, a deferral scorer or the MDP policy "
                           "(`routerzoo train KIND --help` lists its options)")
    # its options depend on the kind: the arguments after `train` go, in order, to routerzoo.training.cli
    # (jsonargparse, built from the kind's typed config) when the command runs
    train.set_defaults(handler=cmd_train, takes_rest=True)

    ev = sub.add_parser("eval", help="evaluate a router on cost-quality curves", description=(
        "Sweep the cost weight λ and report AIQ (router, zero router, oracle), the share of the "
        "zero-router→oracle gap closed, best single model, and with --strong/--weak APGR and CPT. "
        "A deferral scorer artifact gets AUROC and deferral-curve AUC; an MDP router artifact or a "
        "cascade YAML (from `routerzoo calibrate-cascade --out`) is run offline: mean quality, mean "
        "summed cost, calls per prompt, AIQ and cascade AUC (docs/cascades.md)."))
    ev.add_argument("routers", nargs="+", metavar="ROUTER", help="router artifact directory; several are compared side by side "
                    "(or one deferral scorer / MDP router artifact, or one cascade YAML)")
    ev.add_argument("--data", required=True, help="dataset directory to evaluate on")
    ev.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="which prompts (default test)")
    ev.add_argument("--json", dest="json_out", help="write the full report (with the curve) as JSON here")
    ev.add_argument("--plot", help="write the cost-quality plot (PNG) here")
    ev.add_argument("--strong", help="strong model for APGR / CPT (with --weak)")
    ev.add_argument("--weak", help="weak model for APGR / CPT (with --strong)")
    ev.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% confidence intervals (default 0: off)")
    ev.add_argument("--prices", help="decide and score at these prices (YAML/JSON, $ per 1M input/output tokens per "
                                     "model) instead of the training prices: the router's costs and the dataset's "
                                     "outcomes (from their token counts) are repriced; no retraining needed")
    ev.add_argument("--model", help="deferral scorer: the model whose answers are scored (default: the scorer's own)")
    ev.add_argument("--next-model", help="deferral scorer: the model deferred to, for the deferral curve "
                                         "(default: the scorer's own, or the other model of a two-model table)")

    rt = sub.add_parser("routers", help="list registered kinds", description=(
        "List every registered kind: routers (`routerzoo train --router NAME`), deferral scorers and policies."))
    rt.add_argument("--role", choices=["router", "deferral", "policy"], help="only kinds of this role")

    demo = sub.add_parser("demo", help="end-to-end demo on the bundled MMLU-Pro sample", description=(
        "Import the bundled MMLU-Pro sample, train kNN and MLP routers (and baselines), evaluate them "
        "on the held-out split, log everything to MLflow, print a table and write a cost-quality PNG."))
    demo.add_argument("--workdir", default="routerzoo-demo", help="where data, routers, reports and the MLflow store go (default ./routerzoo-demo)")
    serving_cli.add_parser(sub).set_defaults(handler=serving_cli.run)
    _add_calibrate(sub)
    _add_calibrate_cascade(sub)
    _add_assign(sub)
    zoo_cli.add_parser(sub).set_defaults(handler=zoo_cli.run)
    for name, handler in (("eval", cmd_eval), ("routers", cmd_routers), ("demo", cmd_demo)):
        sub.choices[name].set_defaults(handler=handler)
    for name, handler in (("import", cmd_data_import), ("show", cmd_data_show), ("split", cmd_data_split),
                          ("formats", cmd_data_formats), ("generate", cmd_data_generate)):
        dsub.choices[name].set_defaults(handler=handler)
    return parser


def _add_target_arguments(p: argparse.ArgumentParser, cost_help: str, *, share: bool) -> None:
    """The one required target flag of ``calibrate`` and ``calibrate-cascade``: --target-cost,
    --target-quality and (routers only) --target-share."""
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-cost", type=float, metavar="USD", help=cost_help)
    if share:
        target.add_argument("--target-share", metavar="MODEL=P", help="share P in [0, 1] of prompts sent to MODEL")
    target.add_argument("--target-quality", type=float, metavar="Q", help="mean quality to reach at the lowest cost")


def _add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="set a router's default cost weight from a cost, share or quality target",
        description=("Pick the cost weight λ that meets a target on a calibration split (default val), store it as "
                     "the artifact's default policy (used by eval, the pyfunc and the server when a request sets "
                     "nothing), and report the realised figure on the test split next to the target."))
    p.add_argument("router", metavar="ROUTER", help="router artifact directory (or models:/NAME@ALIAS with --out)")
    p.add_argument("--data", required=True, help="dataset directory with benchmark outcomes")
    _add_target_arguments(p, "mean cost per prompt, USD", share=True)
    p.add_argument("--split", default="val", help="calibration split (default val); several joined by commas, e.g. train,val, "
                                                  "calibrate on more prompts (the router's own training prompts are in-sample)")
    p.add_argument("--test-split", default="test", choices=["train", "val", "test", "all", "none"],
                   help="split the realised figure is reported on (default test; none to skip)")
    p.add_argument("--out", help="write the calibrated artifact here (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists, or, without --out, ROUTER in place")
    p.add_argument("--json", dest="json_out", help="write the calibration result as JSON here")
    p.add_argument("--register", metavar="NAME", help="register the calibrated router as a new version of NAME in the "
                                                      "MLflow model registry (with or without --out)")
    p.add_argument("--alias", metavar="A", help="with --register: point NAME@A at the new version")
    p.add_argument("--tracking-uri", help="with --register: MLflow tracking URI (default $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--allow-miss", action="store_true", help="when no cost weight meets the target, write the nearest "
                                                              "point with a warning instead of refusing")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the out-of-fold estimate (default 5; 0 skips)")
    p.add_argument("--dry-run", action="store_true", help="only report: write nothing (exit 0)")
    p.set_defaults(handler="routerzoo.training.calibrate:run")


def _add_calibrate_cascade(sub) -> None:
    p = sub.add_parser(
        "calibrate-cascade", help="per-stage cascade thresholds for a target mean cost or quality",
        description=("Run the cascade offline on a calibration split (every call's cost counted) to pick one "
                     "threshold per stage meeting a target mean cost or quality, report the realised figure on "
                     "the test split, and write the cascade section of a serve config (mode: cascade)."))
    p.add_argument("--data", required=True, help="dataset directory with outcomes (responses / token logprobs as the scorer needs)")
    p.add_argument("--chain", required=True, help="models in calling order, comma-separated (cheapest first)")
    p.add_argument("--scorer", default="logprob-confidence", help="deferral kind or scorer artifact directory")
    _add_target_arguments(p, "mean cost per prompt, USD, every call counted", share=False)
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="calibration split (default val)")
    p.add_argument("--test-split", default="test", choices=["train", "val", "test", "none"],
                   help="split the realised figure is reported on (default test)")
    p.add_argument("--out", help="write the calibrated cascade here: a folder (a self-contained cascade artifact: chain, "
                                 "thresholds, scorer, prices) or, for the old form, a .yaml serve-config section")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", dest="json_out", help="write the calibration result as JSON here")
    p.add_argument("--allow-miss", action="store_true", help="when no thresholds meet the target, write the closest "
                                                              "point with a warning instead of refusing")
    p.set_defaults(handler="routerzoo.training.calibrate_cascade:run")


def _add_assign(sub) -> None:
    p = sub.add_parser(
        "assign", help="route a batch of prompts under a budget and per-model capacity",
        description="Choose one model per prompt for a whole batch: maximise total predicted quality "
                    "within a USD budget and per-model traffic shares (HiGHS LP + exact MILP).",
    )  # fmt: skip
    p.add_argument("router", help="router artifact directory or models:/NAME@ALIAS")
    p.add_argument("--prompts", required=True, help="CSV, JSONL or Parquet with a 'prompt' column (and optionally 'id')")
    p.add_argument("--budget", required=True, type=float, help="total USD the batch may cost (by predicted cost)")
    p.add_argument("--capacity", action="append", default=[], metavar="MODEL=SHARE",
                   help="at most SHARE (0-1] of the prompts to MODEL; repeat for several models")
    p.add_argument("--cost-weight", type=float, default=0.0,
                   help="λ >= 0: maximise quality - λ·cost instead of quality (default 0)")
    p.add_argument("--time-limit", type=float, default=30.0, help="solver time limit in seconds (default 30)")
    p.add_argument("--out", required=True, help="per-prompt decisions (CSV, JSONL or Parquet by extension)")
    p.add_argument("--overwrite", action="store_true", help="replace --out and its summary if they exist")
    p.set_defaults(handler="routerzoo.assign:run")


def _version() -> str:
    from routerzoo import __version__

    return f"routerzoo {__version__}"


def _write_prompt_list(path, questions: list[dict]) -> None:
    from routerzoo.data.fsutil import atomic_write_bytes

    atomic_write_bytes(path, "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions).encode("utf-8"))
    print(f"wrote {len(questions)} logged prompt(s) to {path} (replay: routerzoo data generate "
          f"--questions {path} --scorer judge ...)")


def cmd_data_import(args) -> int:
    import csv
    import io

    from routerzoo.data.dataset import REJECTS_FILE, save_dataset
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.data.importers import import_files
    from routerzoo.data.splits import SplitSpec

    # fail on an unusable --out before the (possibly long) import
    check_output_dir(args.out, overwrite=args.overwrite, what="dataset directory")
    questions = None
    if args.prompts_out is not None:
        if args.format != "serve-log":
            raise UserError(f"--prompts-out lists a request log's prompts: it needs --format serve-log, not {args.format}")
        if Path(args.prompts_out).exists() and not args.overwrite:
            raise UserError(f"--prompts-out {args.prompts_out} already exists; pass --overwrite to replace it")
        from routerzoo.data.importers.serve_log import prompt_list

        questions, n_feedback = prompt_list(args.sources)
        if n_feedback == 0:
            _write_prompt_list(args.prompts_out, questions)
            print("note: the log holds no feedback yet, so no dataset was written")
            return 0
    spec = SplitSpec(val=args.val, test=args.test, seed=args.seed, stratify=args.stratify)
    name = args.name or Path(args.out).resolve().name
    dataset = import_files(args.sources, args.format, prices=args.prices, name=name, split=spec,
                           trust_pickle=args.trust_pickle, strict=args.strict, on_invalid=args.on_invalid)
    extra = {}
    if dataset.rejects:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["file", "row", "field", "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(dataset.rejects)
        extra[REJECTS_FILE] = buf.getvalue().encode()
    save_dataset(dataset, args.out, overwrite=args.overwrite, extra_files=extra)
    if questions is not None:  # written once the import has succeeded: a failed import leaves nothing behind
        _write_prompt_list(args.prompts_out, questions)
    counts = dataset.manifest["counts"]
    print(f"imported {counts['prompts']} prompts, {counts['models']} models into {args.out}")
    for note in dataset.manifest.get("notes", []):
        if note.startswith("warning: "):
            print(f"routerzoo: {note}", file=sys.stderr)
        else:
            print(f"note: {note}")
    if dataset.rejects:
        print(f"routerzoo: warning: skipped {len(dataset.rejects)} invalid record(s); listed in "
              f"{Path(args.out) / REJECTS_FILE}", file=sys.stderr)
    print(describe_dataset(dataset))
    return 0


def describe_dataset(dataset) -> str:
    """Human summary: per-model outcomes, splits, oracle quality, preferences."""
    import numpy as np

    m = dataset.manifest
    lines = [f"dataset {m.get('name')}  sha256 {str(m.get('sha256'))[:16]}…  tables: {', '.join(m.get('tables', []))}"]
    c = m.get("counts", {})
    lines.append(f"prompts {c.get('prompts')}  models {c.get('models')}  splits {c.get('splits')}  split spec {m.get('split')}")
    if dataset.outcomes is not None:
        matrix = dataset.outcome_matrix()
        width = max(len(x) for x in matrix.models)
        lines.append(f"{'model':<{width}}  {'prompts':>7}  {'quality':>7}  {'mean cost $':>11}  {'$/1M in':>8}  {'$/1M out':>8}")
        order = np.argsort(-np.nanmean(matrix.quality, axis=0))
        for j in order:
            name = matrix.models[j]
            seen = ~np.isnan(matrix.quality[:, j])
            price = m.get("prices", {}).get(name, {})
            pin = f"{price['input']:.3g}" if "input" in price else "-"
            pout = f"{price['output']:.3g}" if "output" in price else "-"
            lines.append(f"{name:<{width}}  {int(seen.sum()):>7}  {np.nanmean(matrix.quality[:, j]):>7.3f}  {np.nanmean(matrix.cost[:, j]):>11.6f}  {pin:>8}  {pout:>8}")
        complete = matrix.complete()
        if len(complete):
            best = np.nanmean(complete.quality, axis=0).max()
            lines.append(f"oracle quality {complete.quality.max(axis=1).mean():.3f} vs best single {best:.3f} on {len(complete)} prompts with every model")
    if dataset.preferences is not None:
        prefs = dataset.preferences
        lines.append(f"preference pairs {len(prefs)}: winners {prefs['winner'].value_counts().to_dict()}")
    return "\n".join(lines)


def cmd_data_show(args) -> int:
    from routerzoo.data.dataset import load_dataset

    print(describe_dataset(load_dataset(args.dataset)))
    return 0


def cmd_data_split(args) -> int:
    from routerzoo.data.dataset import load_dataset, resplit, save_dataset
    from routerzoo.data.splits import SplitSpec

    # the split is about to be replaced: check the content only, so an edited split column can be repaired
    dataset = resplit(load_dataset(args.dataset, verify="content"), SplitSpec(val=args.val, test=args.test, seed=args.seed, stratify=args.stratify))
    save_dataset(dataset, args.dataset, overwrite=True, keep_other_files=True)  # atomic: old or new, never a mix
    print(f"re-split {args.dataset}: {dataset.manifest['counts']['splits']}")
    return 0


def cmd_data_formats(args) -> int:
    from routerzoo.data.importers import FORMATS, get_format

    if args.format:
        print(get_format(args.format).doc)
        return 0
    for name, importer in FORMATS.items():
        print(f"{name:<12} {importer.summary}")
    print("\n`routerzoo data formats NAME` describes a format's input in full.")
    return 0


def _eval_paths(args) -> None:
    """Check output paths before loading or evaluating anything."""
    from routerzoo.training.train import check_plot_path

    if args.json_out and Path(args.json_out).is_dir():
        raise UserError(f"--json {args.json_out} is a directory; give a file name such as {Path(args.json_out) / 'report.json'}")
    check_plot_path(args.plot)
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}")


def cmd_eval(args) -> int:
    from routerzoo.data.dataset import load_dataset
    from routerzoo.evaluation.report import format_table
    from routerzoo.evaluation.runner import evaluate_router
    from routerzoo.routers import load_router

    _eval_paths(args)
    from routerzoo.evaluation.artifact_eval import artifact_role

    roles = {path: artifact_role(path) for path in args.routers}
    if any(role != "router" for role in roles.values()):
        from routerzoo.evaluation.artifact_eval import eval_command

        return eval_command(args, roles)
    prices = None
    if args.prices:
        from routerzoo.data.prices import load_price_file

        prices = load_price_file(args.prices)
    routers = {}
    for path in args.routers:
        name = Path(path).resolve().name if not str(path).startswith(("models:/", "runs:/")) else str(path)
        router = load_router(path)
        if prices is not None:
            router = router.with_prices({m: p for m, p in prices.items() if m in router.models}, where=f"--prices {args.prices}")
        routers[name if name not in routers else f"{name}-{len(routers)}"] = router
    first = next(iter(routers.values()))
    for name, router in routers.items():
        if router.models != first.models:
            raise UserError(f"routers compared side by side need the same candidate models; {name} has {router.models}, "
                            f"{next(iter(routers))} has {first.models}")
    dataset = load_dataset(args.data)
    # the outcomes are repriced too, or the baselines and the oracle would stay at the old prices
    new_prices = None if prices is None else {m: p for m, p in prices.items() if m in first.models}
    reports = {name: evaluate_router(router, dataset, args.split, strong=args.strong, weak=args.weak, bootstrap=args.bootstrap,
                                     prices=new_prices)
               for name, router in routers.items()}
    if args.json_out:
        payload = next(iter(reports.values())) if len(reports) == 1 else {"reports": reports}
        from routerzoo.data.fsutil import atomic_write_text

        atomic_write_text(args.json_out, json.dumps(payload, indent=2) + "\n")  # a reader never sees half a report
    if args.plot and any("curve" in r for r in reports.values()):
        from routerzoo.evaluation.plot import plot_reports

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_reports({k: r for k, r in reports.items() if "curve" in r}, args.plot,
                     title=f"{', '.join(reports)} on {dataset.name} ({args.split})")

    any_report = next(iter(reports.values()))
    dropped = any_report["dataset"]["prompts_dropped_incomplete"]
    print(f"{dataset.name}[{args.split}]: {any_report['n_prompts']} prompts, {len(first.models)} models"
          + (f" ({dropped} prompts without every model's outcome left out)" if dropped else "")
          + (f", decided and scored at prices from {args.prices}" if args.prices else ""))
    print(format_table([report | {"name": name} for name, report in reports.items()]))
    if "best_single" in any_report:
        best = any_report["best_single"]
        print(f"best single model: {best['name']}, quality {best['quality']:.4f} at ${best['cost']:.6f}/prompt")
    if any_report.get("pairs"):
        coin = any_report["pairs"].get("coin_log_loss")
        print(f"preference pairs: {any_report['pairs']['n_pairs']} ({any_report['pairs']['n_ties']} ties); "
              f"a coin's log-loss is {coin:.4f}" if coin is not None else "")
    if args.strong:
        for name, report in reports.items():
            pairs = {"APGR": report.get("apgr"), "APGR (RouteLLM's 10 bins)": report.get("apgr_routellm"),
                     "CPT(50%)": report.get("cpt50"), "CPT(80%)": report.get("cpt80")}
            print(f"{name}, {args.strong} vs {args.weak}: " + ", ".join(
                f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in pairs.items()))
    if args.json_out:
        print(f"report: {args.json_out}")
    if args.plot and any("curve" in r for r in reports.values()):
        print(f"plot: {args.plot}")
    return 0


def cmd_routers(args) -> int:
    from routerzoo.routers.registry import ROLES, kinds

    headings = {"router": "routers", "deferral": "deferral scorers", "policy": "policies"}
    for role in ROLES:
        if args.role and role != args.role:
            continue
        print(f"{headings[role]}:")
        for name, spec in kinds(role).items():
            print(f"  {name:<20} {spec.summary}")
    print("\n`routerzoo train NAME --help` lists the options of a router, a deferral scorer or a trained policy.")
    return 0


def cmd_demo(args) -> int:
    from routerzoo.demo import run_demo

    run_demo(Path(args.workdir))
    return 0


def cmd_data_generate(args) -> int:
    from routerzoo.data.generate import run as generate_run

    return generate_run(args)


def cmd_train(args) -> int:
    from routerzoo.training.cli import main as train_main

    return train_main(args.rest)


def _handler(ref):
    """A handler, or its ``module:function`` (imported only when that command runs: `serve` and the
    other light commands never import training code, pandas or the solver)."""
    if callable(ref):
        return ref
    import importlib

    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def run(argv: list[str]) -> int:
    parser = build_parser()
    # parse_known_args: `train` takes the arguments after it as they are (its stack knows the kind's
    # options); for every other command an unknown argument is argparse's usual usage error
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    handler = getattr(args, "handler", None)
    if handler is None:  # `routerzoo`, `routerzoo data`: the command's help
        if args.command is None:
            parser.print_help()
            return 2
        parser.parse_args([args.command, "--help"])
    return _handler(handler)(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"routerzoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("routerzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:  # pragma: no cover - the console script; tests call main()
    """The ``routerzoo`` command: :func:`main`, then exit without native library teardown.

    Once the command has finished and Python's exit hooks have run (MLflow ends its runs there),
    the process leaves with ``os._exit``. Left to the interpreter's full shutdown, native thread
    pools (torch, tokenizers, Arrow) are torn down in no fixed order; on a loaded machine that
    turned a correct ``exit 2`` into ``terminate called without an active exception`` (SIGABRT).
    """
    import atexit

    code = main()
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
