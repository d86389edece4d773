"""``routerzoo train KIND``: one parser stack for every role (routers, deferral scorers, trained policies).

Two stages, both parsers:

1. :func:`resolve_kind` reads the kind from ``--router NAME`` / ``--kind NAME``, a first positional
   ``KIND``, or the ``kind:`` of a ``--config`` file (``argparse.parse_known_args``: it knows only
   those options and leaves the rest, in order, to stage 2).
2. :func:`build_parser` builds a jsonargparse parser for that kind: the options every role shares
   (``--data``, ``--out``, ``--overwrite``, ``--seed``, ``--config``), the kind's typed config
   dataclass as the ``--router.*`` group (in a routing platform "model" means a candidate LLM, so
   the kind's settings never live under that name), and its role's typed groups (:data:`ROLES`:
   ``--tracking.*`` for every role; ``--cv.*``, ``--features.*``, ``--trainer.*`` for routers).

So ``routerzoo train KIND --help`` is generated from the typed configs, with their docstrings, for
every role; an unknown flag or a bad value is one line (a :class:`~routerzoo.errors.ConfigError`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.registry import KINDS, get_kind, kinds

ROUTER_DESCRIPTION = """Train a router on a dataset's train split (validation split for early stopping and
model selection), write its artifact directory (config.json + weights.safetensors) and log the run
to MLflow.

Without a kind (--router NAME, `routerzoo train NAME`, or a --config naming one) the default router
is trained: auto (no kind was best across datasets; auto's ensemble was level with kNN everywhere and
ahead on average in bench/auto_selection.py); `routerzoo train knn` trains kNN alone, in seconds.
Deferral scorers and the MDP policy train through the same command: `routerzoo train KIND --help`
lists any kind's options (`routerzoo routers` lists the kinds).

Every one-shot router trained on outcomes is cross-validated afterwards on train+val (--cv.folds,
default 5; 0 disables; test is never used): CV mean ± sd of gap closed and AIQ, logged to MLflow and
the artifact's lineage. The out-of-fold predictions choose the default policy: the cheapest cost
weight that matches the best single model's quality (--cv.default_policy none keeps λ = 0).

--router auto cross-validates candidate kinds (--auto.candidates) within --auto.time_limit seconds
and keeps a greedy ensemble of them (--auto.method ensemble), or the best single candidate when the
ensemble's cross-fitted CV is clearly worse.

Examples:
  routerzoo train --data data/mmlu-pro --out routers/default
  routerzoo train --router auto --data data/mmlu-pro --out routers/auto --auto.time_limit 600
  routerzoo train knn --data data/mmlu-pro --out routers/knn
  routerzoo train --config configs/routers/mlp.yaml --data data/mmlu-pro --out routers/mlp --router.hidden "[512]"
  routerzoo train --router mlp --data data/a --eval-data data/b --out routers/mlp-ab
  routerzoo train --router elo --data data/alpaca-eval --out routers/elo
"""

DEFERRAL_DESCRIPTION = """Train the {kind!r} deferral scorer: {summary}.

It is fitted on the answers in the dataset's train split (responses, token logprobs and their
quality; kinds without a fit are saved as configured), evaluated on the val and test splits (AUROC
of answer correctness, and the deferral curve to --next-model when given), written as an artifact
(config.json + weights.safetensors, nothing pickled) and logged to MLflow like a router
(--tracking.enabled false: not logged; --tracking.register NAME: also registered).

Examples:
  routerzoo train {kind} --data data/answers --out scorers/{kind}
  routerzoo train --config configs/deferral/{kind}.yaml --data data/answers --out scorers/{kind} --next-model big
"""

POLICY_DESCRIPTION = """Train the {kind!r} policy: {summary}.

It is fitted on the dataset's train split, run offline on the val and test splits (mean quality,
mean summed cost, calls per prompt), written as an artifact (config.json + weights.safetensors,
nothing pickled) and logged to MLflow like a router (--tracking.enabled false: not logged;
--tracking.register NAME: also registered).

Examples:
  routerzoo train {kind} --data data/answers --out policies/{kind} --router.cost_weight 300
  routerzoo train --config configs/policies/{kind}.yaml --data data/answers --out policies/{kind}
"""


@dataclass(frozen=True)
class RoleStack:
    """What ``routerzoo train`` adds for one role on top of the options every role shares.

    Attributes:
        description: the ``--help`` text (``{kind}`` and ``{summary}`` filled in).
        artifact: what ``--out`` holds, for its help.
        groups: ``(name, "module:Class", help)`` typed config groups, imported when the parser is built.
        options: adds the role's plain options (``--eval-data``, ``--next-model``, ...) to a parser.
        run: ``run(kind, cfg, init) -> exit status`` trains from the parsed and instantiated config.
    """

    description: str
    artifact: str
    groups: tuple[tuple[str, str, str], ...]
    options: Callable
    run: Callable


_TRACKING = ("tracking", "routerzoo.training.train:TrackingConfig", "MLflow tracking (and optional registration)")


def _router_options(parser) -> None:
    from routerzoo.training.train import EVAL_SPLITS

    parser.add_argument("--eval-data", type=str | None, default=None, help="another dataset to evaluate the trained router on")
    parser.add_argument("--eval-split", type=str, default="test", help=f"split of --eval-data to evaluate on ({'|'.join(EVAL_SPLITS)})")
    parser.add_argument("--plot", type=str | None, default=None, help="write the --eval-data cost-quality plot (PNG) here")


def _deferral_options(parser) -> None:
    parser.add_argument("--next-model", type=str, default="", help="also report the deferral curve from the scored "
                        "model to this one (default: the config's next_model, if any)")


def _no_options(parser) -> None:
    pass


def _run_router(kind: str, cfg, init) -> int:
    from routerzoo.evaluation.report import format_table
    from routerzoo.training.auto import AUTO
    from routerzoo.training.train import train_router
    from routerzoo.training.trainer_config import ddp_worker

    resolved = cfg.clone()
    del resolved["config"]
    result = train_router(
        kind, init.auto if kind == AUTO else init.router, cfg.data, cfg.out,
        eval_data=cfg.eval_data, eval_split=cfg.eval_split,
        features=init.features, tracking=init.tracking, seed=cfg.seed, trainer=init.trainer,
        resolved_config=resolved.as_dict(), plot=cfg.plot, overwrite=cfg.overwrite, cv=init.cv,
    )
    if ddp_worker():  # rank 0 reports; a DDP worker only trained its share
        return 0
    if result.auto is not None:
        from routerzoo.training.auto import format_table as auto_table

        # the table's last row may be the ensemble or stack built from the candidates, not one of them
        n = sum(1 for r in result.auto["candidates"] if not r["candidate"].startswith(("ensemble(", "stack(")))
        reps = result.auto.get("repeats", 1)
        planned = result.auto.get("repeats_planned", reps)
        rtxt = f" × {reps} fold assignments" if reps > 1 else ""
        if planned > reps:
            rtxt += f" ({planned} planned; the time limit cut the rest)"
        print(f"auto: {result.auto['folds']}-fold CV{rtxt} of {n} candidates in "
              f"{result.auto['search_s']:.0f} s; chosen ({result.auto['method']}): {result.auto['chosen']}")
        print(auto_table(result.auto["candidates"], result.auto["chosen"]))
    for line in result.notes:
        print(line)
    print(f"router {result.router.kind!r} written to {result.router_dir}")
    _print_tracking(init.tracking, result.run_id, result.registered_version if result.model_uri else None)
    rows = [report | {"name": f"{name}: {report['dataset']['name']}[{report['dataset']['split']}] n={report['n_prompts']}"}
            for name, report in result.reports.items()]
    if rows:
        print(format_table(rows))
    if cfg.plot:
        print(f"plot: {cfg.plot}")
    return 0


def _run_deferral(kind: str, cfg, init) -> int:
    from routerzoo.training.train_deferral import train_deferral

    _, path, metrics = train_deferral(kind, init.router, cfg.data, cfg.out, next_model=cfg.next_model,
                                      overwrite=cfg.overwrite, seed=cfg.seed, tracking=init.tracking)
    print(f"deferral scorer {kind!r} written to {path}")
    _print_artifact_tracking(init.tracking, path, metrics.pop("registered_version", None))
    print(json.dumps(metrics, indent=2, default=float))  # last: scripts read the JSON from the first "{"
    return 0


def _run_policy(kind: str, cfg, init) -> int:
    # the one trained policy today is the MDP router (fitted Q-iteration); Lightning is imported here,
    # after the config was checked
    from routerzoo.training.mdp import train_mdp

    _, path, metrics = train_mdp(init.router, cfg.data, cfg.out, overwrite=cfg.overwrite, seed=cfg.seed,
                                 tracking=init.tracking)
    print(f"{kind} policy written to {path}")
    _print_artifact_tracking(init.tracking, path, metrics.pop("registered_version", None))
    print(json.dumps(metrics, indent=2, default=float))
    return 0


def _print_tracking(tracking, run_id: str | None, version: int | None) -> None:
    if run_id:
        print(f"MLflow run {run_id} (experiment {tracking.experiment!r})")
    if run_id and tracking.register and version:
        print(f"registered as {tracking.register} version {version}"
              + (f", alias @{tracking.alias}" if tracking.alias else ""))


def _print_artifact_tracking(tracking, path: Path, version: int | None) -> None:
    """The run the artifact's lineage records, and the version it was registered as."""
    from routerzoo.routers.core.artifact import read_document

    _print_tracking(tracking, read_document(path).get("lineage", {}).get("mlflow_run_id"), version)


#: The parser stack of each role; ``routerzoo train`` has no per-kind branches.
ROLES: dict[str, RoleStack] = {
    "router": RoleStack(
        ROUTER_DESCRIPTION, "router artifact",
        groups=(
            ("cv", "routerzoo.training.cv:CVConfig", "K-fold cross-validation on train+val, and the default policy chosen on it"),
            ("features", "routerzoo.training.context:FeatureConfig", "prompt features (embedding encoder)"),
            _TRACKING,
            ("trainer", "routerzoo.training.trainer_config:TrainerConfig", "Lightning settings for Lightning-trained "
             "routers (override the router's own; e.g. --trainer.strategy ddp --trainer.devices 2)"),
        ),
        options=_router_options, run=_run_router),
    "deferral": RoleStack(DEFERRAL_DESCRIPTION, "deferral scorer artifact", groups=(_TRACKING,),
                          options=_deferral_options, run=_run_deferral),
    "policy": RoleStack(POLICY_DESCRIPTION, "policy artifact", groups=(_TRACKING,), options=_no_options, run=_run_policy),
}


def _load_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    if isinstance(loaded.get("router"), str) or "model" in loaded:
        raise UserError(f"{path}: configs name the router kind with `kind: NAME` and its settings under `router:` "
                        "(routerzoo 0.1 used `router: NAME` and `model:`); see configs/routers/*.yaml")
    return loaded


def _kind_parser() -> argparse.ArgumentParser:
    """Stage 1: only the options that name the kind; everything else is left, in order, for stage 2."""
    p = argparse.ArgumentParser(prog="routerzoo train", add_help=False, allow_abbrev=False, exit_on_error=False)
    # allow_abbrev=False: `--router.k` must not read as an abbreviation of `--router`
    p.add_argument("--router", "--kind", dest="kind", metavar="KIND")
    p.add_argument("--config", dest="configs", action="append", default=[], metavar="FILE")
    return p


def resolve_kind(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the kind named, stage 2's arguments).

    The kind is ``--router NAME`` / ``--kind NAME`` (the last given), else a first positional ``KIND``
    (``routerzoo train knn ...``), else the last ``--config`` file's ``kind:``; None when nothing names
    one. Stage 2 gets the ``--config`` files first, so command-line flags override their keys.
    """
    try:
        known, rest = _kind_parser().parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"routerzoo train: {exc}") from None
    # a positional is only ever the first argument: stage 2 has no positionals, so anything else there
    # is an unrecognised argument
    positional = rest.pop(0) if rest and not rest[0].startswith("-") else None
    if known.kind and positional and known.kind != positional:
        raise ConfigError(f"routerzoo train {positional} names kind {positional!r}, --router names {known.kind!r}")
    from_files = [_load_yaml(Path(path)).get("kind") for path in known.configs]
    from_file = next((k for k in reversed(from_files) if k is not None), None)
    named = known.kind or positional
    if named and from_file and named != from_file:
        raise ConfigError(f"--router {named} disagrees with `kind: {from_file}` in the --config file; "
                          "name one kind (drop --router, or use that kind's config)")
    stage2 = [arg for path in known.configs for arg in ("--config", path)] + rest
    return named or from_file, stage2


def role_of(kind: str) -> str:
    """The role whose stack trains ``kind``, or a ConfigError listing what ``routerzoo train`` trains."""
    from routerzoo.training.auto import AUTO

    if kind == AUTO:  # automatic selection among routers: not a registered kind
        return "router"
    if kind not in KINDS:
        trained = {role: sorted(name for name, spec in kinds(role).items() if role != "policy" or spec.fit)
                   for role in ROLES}
        raise ConfigError(f"unknown router {kind!r}; `routerzoo train` trains routers {trained['router'] + [AUTO]}, "
                          f"deferral scorers {trained['deferral']} and policies {trained['policy']}")
    spec = KINDS[kind]
    if spec.role == "policy" and spec.fit is None:  # a deferral kind without a fit is saved as configured
        raise UserError(f"policy {kind!r} is not trained: it is configured (a router's default policy, "
                        "`routerzoo calibrate`, `routerzoo calibrate-cascade`)")
    return spec.role


def build_parser(kind: str):
    """The jsonargparse parser of ``routerzoo train`` for ``kind`` (any role)."""
    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

    from routerzoo.training.auto import AUTO

    class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help with the description's examples kept line by line."""

    role = role_of(kind)
    stack = ROLES[role]
    summary = "" if kind == AUTO else get_kind(kind).summary
    parser = ArgumentParser(prog="routerzoo train", description=stack.description.format(kind=kind, summary=summary),
                            exit_on_error=False, default_env=False, formatter_class=HelpFormatter)
    trainable = sorted(name for name, spec in KINDS.items() if spec.role != "policy" or spec.fit)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file (`kind:`, `router:`, ...); "
                        "command-line flags override its keys")
    parser.add_argument("--kind", type=str, default=kind, help=f"kind to train (also --router NAME, or `routerzoo train "
                        f"NAME`), one of {trainable + [AUTO]}")
    parser.add_argument("--data", type=str, required=True, help="dataset directory (from `routerzoo data import`) to train on")
    parser.add_argument("--out", type=str, required=True, help=f"directory to write the {stack.artifact} to")
    # nargs="?": `--overwrite` alone (as deferral and mdp training took it) and `--overwrite true` both work
    parser.add_argument("--overwrite", type=bool, nargs="?", const=True, default=False, help="replace an existing --out directory")
    parser.add_argument("--seed", type=int, default=0, help="global random seed")
    stack.options(parser)
    if kind == AUTO:
        from routerzoo.training.auto import AutoConfig

        parser.add_class_arguments(AutoConfig, "auto", help="automatic router selection by cross-validation")
    else:
        noun = {"router": "router", "deferral": "deferral scorer", "policy": "policy"}[role]
        parser.add_class_arguments(get_kind(kind).load_config(), "router", help=f"settings of the {kind!r} {noun} "
                                   "(--router.FIELD VALUE; the `router:` section of a --config file)")
    for name, ref, help_text in stack.groups:
        module, _, attr = ref.partition(":")
        parser.add_class_arguments(getattr(importlib.import_module(module), attr), name, help=help_text)
    return parser


def main(argv: list[str]) -> int:
    """``routerzoo train [KIND] [--router KIND] [--config FILE] --data DIR --out DIR [options]``."""
    from routerzoo.extras import require

    require("jsonargparse", "`routerzoo train`")
    named, argv = resolve_kind(argv)
    from routerzoo.routers.registry import DEFAULT_ROUTER

    kind = named or DEFAULT_ROUTER
    parser = build_parser(kind)
    try:
        cfg = parser.parse_args(argv)
        init = parser.instantiate_classes(cfg)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"routerzoo train: {exc}".replace("\n", " ")) from None
    except (TypeError, ValueError) as exc:  # jsonargparse may surface a config's own validation this way
        raise ConfigError(f"routerzoo train: {exc}".replace("\n", " ")) from None
    if cfg.kind != kind:
        raise ConfigError(f"--kind {cfg.kind!r} (from a --config file's `kind:` or --kind) disagrees with the kind "
                          f"{kind!r} the options were built for")
    if named is None:  # said after parsing, so `routerzoo train --help` prints the help alone
        print(f"no --router given: training the default router {kind!r} (see `routerzoo routers`)", file=sys.stderr)
    return ROLES[role_of(kind)].run(kind, cfg, init)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
