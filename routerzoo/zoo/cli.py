"""``routerzoo zoo``: the model registry from the command line.

    routerzoo zoo list
    routerzoo zoo show NAME[@ALIAS|/VERSION]
    routerzoo zoo register RUN_ID|ROUTER_DIR --name NAME [--alias A]
    routerzoo zoo compare NAME/1 NAME/2 ... --data DIR [--split test] [--plot OUT.png]
    routerzoo zoo compare CHALLENGER CHAMPION --traffic LOGDIR [--labels DIR ...]
    routerzoo zoo promote NAME/VERSION --alias champion [--if-better-than ALIAS --metric gap_closed --data DIR
                                                        [--min-improvement X] [--confidence 0.95]] [--force]
    routerzoo zoo promote NAME/VERSION --alias champion --if-better-than ALIAS --traffic LOGDIR [--labels DIR ...]
    routerzoo zoo rm NAME[/VERSION|@ALIAS] [--force]

Every subcommand takes ``--tracking-uri`` (default ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``).
A refused promotion prints one line saying by how much and exits with status 1; user errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``zoo`` and its subcommands to ``sub`` (an argparse subparsers action)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", help="MLflow tracking URI: a database URI or http://HOST:PORT of a tracking "
                                               "server (default $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    zoo = sub.add_parser("zoo", help="list, show, register, compare, promote and remove registered routers, scorers and policies",
                         description="The MLflow model registry as a workflow for every role: routers, deferral "
                                     "scorers, cascades and MDP routers.")
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND")
    zsub.add_parser("list", parents=[common], help="registered models (every role), their versions and aliases")
    show = zsub.add_parser("show", parents=[common], help="a model's versions, or one version's lineage and metrics")
    show.add_argument("ref", metavar="NAME[@ALIAS|/VERSION]")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    reg = zsub.add_parser("register", parents=[common], help="register a run's artifact or an artifact directory "
                                                             "(router, deferral scorer, cascade or MDP router)")
    reg.add_argument("source", metavar="RUN_ID|ARTIFACT_DIR")
    reg.add_argument("--name", required=True, help="registered model name")
    reg.add_argument("--alias", help="point NAME@ALIAS at the new version (e.g. challenger)")
    traffic = argparse.ArgumentParser(add_help=False)
    traffic.add_argument("--traffic", metavar="LOGDIR",
                         help="compare on served traffic: the serve config's log.dir (kept with prompts: full). Both "
                              "versions are predicted on the logged prompts: agreement, predicted and realised cost, "
                              "and the paired mean reward of their choices where feedback rates both "
                              "(docs/request-log.md)")
    traffic.add_argument("--labels", metavar="DIR", action="append",
                         help="with --traffic: a dataset whose outcomes rate logged prompts where no feedback does "
                              "(e.g. `data generate --scorer judge` on the prompts `data import --prompts-out` wrote); "
                              "repeatable")
    cmp_ = zsub.add_parser("compare", parents=[common, traffic], help="evaluate versions on the same data or on "
                           "served traffic (table, plot, run)",
                           description="Evaluate versions on one dataset (--data), or a challenger against a champion "
                                       "on the server's request log (--traffic LOGDIR: CHALLENGER CHAMPION).")
    cmp_.add_argument("refs", nargs="+", metavar="NAME/VERSION", help="versions (NAME/VERSION or NAME@ALIAS)")
    cmp_.add_argument("--data", help="dataset directory every version is evaluated on")
    cmp_.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="which prompts (default test)")
    cmp_.add_argument("--plot", help="also write the cost-quality PNG here (it is always logged to the comparison run)")
    pro = zsub.add_parser("promote", parents=[common, traffic], help="point an alias at a version, optionally only if "
                          "it is better (on a dataset, or on served traffic)",
                          description="Point --alias at NAME/VERSION. With --if-better-than ALIAS, only if the version "
                                      "beats that alias's version: on --data by a paired bootstrap of the role's "
                                      "metric, or on --traffic by the paired mean reward on the logged prompts. A "
                                      "refusal says by how much and exits 1 (--force overrides, recorded as a tag).")
    pro.add_argument("ref", metavar="NAME/VERSION", help="the version to promote")
    pro.add_argument("--alias", required=True, help="alias to move, e.g. champion")
    pro.add_argument("--if-better-than", metavar="ALIAS", help="promote only if the version beats ALIAS's version on "
                                                               "--data, or on --traffic (paired mean reward)")
    pro.add_argument("--metric", help="gate metric (default by role: gap_closed for routers, auroc for deferral scorers, "
                                      "cascade_auc for cascades, aiq for MDP routers; also apgr, pair_accuracy, ...; "
                                      "with --traffic: mean_reward)")
    pro.add_argument("--data", help="dataset directory for the gate")
    pro.add_argument("--split", default="test", choices=["train", "val", "test", "all"], help="gate split (default test)")
    pro.add_argument("--min-improvement", type=float, default=0.0,
                     help="the gate's paired-bootstrap lower bound must exceed this (default 0)")
    pro.add_argument("--confidence", type=float, default=0.95, help="level of the paired interval (default 0.95)")
    pro.add_argument("--force", action="store_true", help="promote even if not better (recorded as a version tag)")
    rm = zsub.add_parser("rm", parents=[common], help="remove a version, a model, or an alias")
    rm.add_argument("ref", metavar="NAME[/VERSION|@ALIAS]")
    rm.add_argument("--force", action="store_true", help="also when an alias points at it")
    return zoo


def _print_list(args) -> int:
    from routerzoo.zoo.registry_ops import list_models

    models = list_models(args.tracking_uri)
    if not models:
        print("no registered routers (`routerzoo train --tracking.register NAME` or `routerzoo zoo register`)")
        return 0
    width = max(len(m["name"]) for m in models)
    print(f"{'name':<{width}}  versions  latest  aliases")
    for m in models:
        aliases = ", ".join(f"@{a}→{v}" for a, v in sorted(m["aliases"].items())) or "-"
        print(f"{m['name']:<{width}}  {m['versions']:>8}  {m['latest'] or '-':>6}  {aliases}")
    return 0


def _print_show(args) -> int:
    from routerzoo.zoo.registry_ops import ModelRef, show

    info = show(ModelRef.parse(args.ref), args.tracking_uri)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    if "versions" in info:
        aliases = ", ".join(f"@{a}→{v}" for a, v in sorted(info["aliases"].items())) or "none"
        print(f"{info['name']}: {len(info['versions'])} version(s); aliases {aliases}")
        for v in info["versions"]:
            # each role's headline: gap closed (routers), AUROC (deferral scorers), AIQ (policies)
            names = {"gap_closed": "gap closed", "auroc": "AUROC", "aiq": "AIQ"}
            head = next(((names[metric], v["metrics"][f"{split}_{metric}"]) for metric in names
                         for split in ("eval", "test", "val", "calibration") if f"{split}_{metric}" in v["metrics"]),
                        ("gap closed", "-"))
            tag = " ".join("@" + a for a in v["aliases"])
            print(f"  v{v['version']:<4} {v['created']}  dataset {v['dataset'] or '-'}  {head[0]} {head[1]}  run {v['run_id']}  {tag}")
        return 0
    print(f"{info['name']}/{info['version']}  {' '.join('@' + a for a in info['aliases']) or '(no alias)'}")
    print(f"{info['role']} kind {info['kind']}  encoder {info['encoder'] or '-'}  run {info['run_id']}  "
          f"registered {info['created']}" + (f"  scorer {info['scorer']}" if info.get("scorer") else ""))
    if info["candidates"]:
        print("candidates and training prices (USD per 1M tokens in/out):")
    for m in info["candidates"]:
        p = info["prices"].get(m) or {}
        price = f"{p.get('input')}/{p.get('output')}" if p else "-"
        print(f"  {m}: {price}")
    lineage = {k.removeprefix("routerzoo.lineage."): v for k, v in info["tags"].items() if k.startswith("routerzoo.lineage.")}
    metrics = {k.removeprefix("routerzoo.metric."): v for k, v in info["tags"].items() if k.startswith("routerzoo.metric.")}
    others = {k: v for k, v in info["tags"].items() if not k.startswith(("routerzoo.lineage.", "routerzoo.metric."))}
    for title, block in (("lineage", lineage), ("metrics", metrics), ("tags", others)):
        if block:
            print(f"{title}:")
            for k, v in block.items():
                print(f"  {k}: {v if len(v) <= 160 else v[:157] + '...'}")
    if info["plot"]:
        print(f"plot: {info['plot']}")
    return 0


def _check_aliases(**flags: str | None) -> None:
    """Check each alias flag that is set (``if_better_than=`` is ``--if-better-than``) before any MLflow call."""
    from routerzoo.zoo.registry_ops import check_alias

    for name, value in flags.items():
        if value is not None:
            check_alias(value, "--" + name.replace("_", "-"))


def _register(args) -> int:
    from routerzoo.zoo.registry_ops import check_model_name, register

    check_model_name(args.name, "--name")
    _check_aliases(alias=args.alias)

    version = register(args.source, args.name, alias=args.alias, tracking_uri=args.tracking_uri)
    print(f"registered {args.name}/{version}" + (f" as @{args.alias}" if args.alias else ""))
    return 0


def _compare(args) -> int:
    from routerzoo.errors import UserError
    from routerzoo.zoo.registry_ops import compare, compare_on_traffic_run

    if (args.data is None) == (args.traffic is None):
        raise UserError("zoo compare needs --data DIR or --traffic LOGDIR (one of them)")
    if args.labels and args.traffic is None:
        raise UserError("--labels rates logged prompts: it needs --traffic LOGDIR")
    if args.traffic is not None:
        result, run_id = compare_on_traffic_run(args.refs, args.traffic, args.labels, tracking_uri=args.tracking_uri)
        print(f"traffic {args.traffic}: {result.n_requests} routed requests, {result.n_prompts} distinct prompts; "
              f"{result.labels[0]} (challenger) vs {result.labels[1]} (champion)")
        print(result.table())
        for note in result.notes:
            print(f"note: {note}")
        print(f"comparison run: {run_id}")
        return 0

    result = compare(args.refs, args.data, args.split, plot=args.plot, tracking_uri=args.tracking_uri)
    any_report = next(iter(result.reports.values()))
    print(f"{result.dataset}[{result.split}]: {any_report.get('n_prompts')} prompts")
    print(result.table)
    print(f"comparison run: {result.run_id}")
    if result.plot:
        print(f"plot: {result.plot}")
    return 0


def _promote(args) -> int:
    from routerzoo.zoo.registry_ops import PromotionRefused, promote

    _check_aliases(alias=args.alias, if_better_than=args.if_better_than)

    try:
        record = promote(args.ref, args.alias, if_better_than=args.if_better_than, metric=args.metric, data=args.data,
                         split=args.split, force=args.force, tracking_uri=args.tracking_uri,
                         min_improvement=args.min_improvement, confidence=args.confidence,
                         traffic=args.traffic, labels=args.labels)
    except PromotionRefused as exc:
        print(f"routerzoo: {exc}", file=sys.stderr)
        return 1  # the gate worked: not a usage error, but not a promotion either
    name = args.ref.removeprefix("models:/").rpartition("/")[0]
    line = f"promoted {args.ref} to @{args.alias}"
    if record.get("metric") and record.get("incumbent") is not None:
        line += (f": {record['metric']} {record['candidate']:.4f} vs {record['incumbent']:.4f} for "
                 f"{name}/{record['incumbent_version']} (delta {record['delta']:+.4f}"
                 + (f", {record['confidence']:.0%} paired CI [{record['ci'][0]:+.4f}, {record['ci'][1]:+.4f}]"
                    if record.get("ci") else "") + ")")
    elif record.get("note"):
        line += f" ({record['note']})"
    if record["forced"]:
        line += " [forced: recorded as tag routerzoo.promotion.forced]"
    print(line)
    if record.get("warning"):
        print(f"routerzoo: warning: {record['warning']}", file=sys.stderr)
    return 0


def _rm(args) -> int:
    from routerzoo.zoo.registry_ops import remove

    print(remove(args.ref, force=args.force, tracking_uri=args.tracking_uri))
    return 0


COMMANDS = {"list": _print_list, "show": _print_show, "register": _register, "compare": _compare,
            "promote": _promote, "rm": _rm}


def run(args) -> int:
    """Run the parsed ``zoo`` subcommand; UserErrors propagate to the CLI's handler."""
    if args.zoo_command is None:
        add_parser(argparse.ArgumentParser(prog="routerzoo").add_subparsers()).print_help(sys.stderr)
        return 2
    from routerzoo.zoo.registry_ops import check_tracking_uri, registry_errors

    # an unreachable server fails here in seconds, not after MLflow's minutes of silent retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = check_tracking_uri(args.tracking_uri)
    with registry_errors(f"zoo {args.zoo_command}", uri):
        return COMMANDS[args.zoo_command](args)
