"""``routerzoo train``: LightningCLI-style YAML config, every key overridable on the command line.

The router kind comes from ``--router NAME`` (or ``--kind NAME``, or the config file's ``kind:``
key); its typed config dataclass becomes the ``router`` section, so hyper-parameters are
``--router.k 10`` or ``--router.hidden "[512]"`` (in a routing platform "model" means a candidate
LLM, so router settings never live under that name). ``routerzoo train --router NAME --help`` lists
that router's options with their docstrings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.registry import get_kind, kinds
from routerzoo.training.context import FeatureConfig
from routerzoo.training.cv import CVConfig
from routerzoo.training.train import EVAL_SPLITS, TrackingConfig
from routerzoo.training.trainer_config import TrainerConfig, ddp_worker

DESCRIPTION = """Train a router on a dataset's train split (validation split for early stopping and
model selection), write its artifact directory (config.json + weights.safetensors) and log the run
to MLflow.

Without --router (or a --config naming one) the default router is trained: auto (no kind was best
across datasets; auto's ensemble was level with kNN everywhere and ahead on average in
bench/auto_selection.py). --router knn trains kNN alone, in seconds.

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
  routerzoo train --router knn --data data/mmlu-pro --out routers/knn
  routerzoo train --config configs/routers/mlp.yaml --data data/mmlu-pro --out routers/mlp --router.hidden "[512]"
  routerzoo train --router mlp --data data/a --eval-data data/b --out routers/mlp-ab
  routerzoo train --router elo --data data/alpaca-eval --out routers/elo
"""


def _load_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    if isinstance(loaded.get("router"), str) or "model" in loaded:
        raise UserError(f"{path}: configs name the router kind with `kind: NAME` and its settings under `router:` "
                        "(routerzoo 0.1 used `router: NAME` and `model:`); see configs/routers/*.yaml")
    return loaded


def split_kind(argv: list[str]) -> tuple[str | None, list[str]]:
    """The router kind from ``--router NAME`` / ``--kind NAME`` / the config's ``kind:`` (last wins),
    and argv with ``--router NAME`` rewritten as ``--kind NAME`` for the parser."""
    kind = None
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--router", "--kind"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a router kind; registered: {sorted(kinds('router'))}")
            kind = argv[i + 1]
            out += ["--kind", kind]
            i += 2
            continue
        if arg.startswith(("--router=", "--kind=")):
            kind = arg.split("=", 1)[1]
            out.append(f"--kind={kind}")
        elif arg == "--config" and i + 1 < len(argv):
            from_file = _load_yaml(Path(argv[i + 1])).get("kind")
            if from_file is not None:
                kind = from_file
            out += [arg, argv[i + 1]]
            i += 2
            continue
        else:
            out.append(arg)
        i += 1
    return kind, out


def build_parser(kind: str):
    import argparse

    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

    class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help with the description's examples kept line by line."""

    from routerzoo.training.auto import AUTO, AutoConfig

    config_cls = AutoConfig if kind == AUTO else get_kind(kind, role="router").load_config()
    parser = ArgumentParser(prog="routerzoo train", description=DESCRIPTION, exit_on_error=False, default_env=False,
                            formatter_class=HelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file; command-line flags override its keys")
    parser.add_argument("--kind", type=str, default=kind, help=f"router kind (also --router NAME), one of {sorted(kinds('router'))}")
    parser.add_argument("--data", type=str, required=True, help="dataset directory (from `routerzoo data import`) to train on")
    parser.add_argument("--out", type=str, required=True, help="directory to write the router artifact to")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace an existing --out directory")
    parser.add_argument("--eval-data", type=str | None, default=None, help="another dataset to evaluate the trained router on")
    parser.add_argument("--eval-split", type=str, default="test", help=f"split of --eval-data to evaluate on ({'|'.join(EVAL_SPLITS)})")
    parser.add_argument("--plot", type=str | None, default=None, help="write the --eval-data cost-quality plot (PNG) here")
    parser.add_argument("--seed", type=int, default=0, help="global random seed")
    if kind == AUTO:
        parser.add_class_arguments(config_cls, "auto", help="automatic router selection by cross-validation")
    else:
        parser.add_class_arguments(config_cls, "router", help=f"hyper-parameters of the {kind!r} router")
    parser.add_class_arguments(CVConfig, "cv", help="K-fold cross-validation on train+val, and the default policy chosen on it")
    parser.add_class_arguments(FeatureConfig, "features", help="prompt features (embedding encoder)")
    parser.add_class_arguments(TrackingConfig, "tracking", help="MLflow tracking")
    parser.add_class_arguments(TrainerConfig, "trainer", help="Lightning settings for Lightning-trained routers "
                               "(override the router's own; e.g. --trainer.strategy ddp --trainer.devices 2)")
    return parser


def main(argv: list[str]) -> int:
    import argparse

    from routerzoo.extras import require

    require("jsonargparse", "`routerzoo train`")
    kind, argv = split_kind(argv)
    if kind is None:
        from routerzoo.routers.registry import DEFAULT_ROUTER

        kind = DEFAULT_ROUTER
        if "-h" not in argv and "--help" not in argv:
            print(f"no --router given: training the default router {kind!r} (see `routerzoo routers`)", file=sys.stderr)
    role = kinds()[kind].role if kind in kinds() else "router"
    if role == "deferral":  # deferral scorers: their own entry (routerzoo/training/train_deferral.py)
        from routerzoo.training.train_deferral import main as deferral_main

        return deferral_main(kind, argv)
    if role == "policy":
        if kinds()[kind].fit is None:
            raise UserError(f"policy {kind!r} is not trained: it is configured (a router's default policy, "
                            "`routerzoo calibrate`, `routerzoo calibrate-cascade`)")
        # the trained sequential policy (the MDP router, fitted Q-iteration on benchmark tables)
        from routerzoo.training.mdp_cli import main as mdp_main

        return mdp_main(argv)
    from routerzoo.training.auto import AUTO

    if kind != AUTO:
        get_kind(kind, role="router")  # unknown kind → clear error before building a parser
    parser = build_parser(kind)
    try:
        cfg = parser.parse_args(argv)
        init = parser.instantiate_classes(cfg)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"routerzoo train: {exc}".replace("\n", " ")) from None
    except (TypeError, ValueError) as exc:  # jsonargparse may surface a config's own validation this way
        raise ConfigError(f"routerzoo train: {exc}".replace("\n", " ")) from None
    if cfg.kind != kind:
        raise ConfigError(f"--kind {cfg.kind!r} disagrees with the router {kind!r} the options were built for")
    resolved = cfg.clone()
    del resolved["config"]
    resolved_dict = resolved.as_dict()

    from routerzoo.evaluation.report import format_table
    from routerzoo.training.train import train_router

    result = train_router(
        kind, init.auto if kind == AUTO else init.router, cfg.data, cfg.out,
        eval_data=cfg.eval_data, eval_split=cfg.eval_split,
        features=init.features, tracking=init.tracking, seed=cfg.seed, trainer=init.trainer,
        resolved_config=resolved_dict, plot=cfg.plot, overwrite=cfg.overwrite, cv=init.cv,
    )
    if ddp_worker():  # rank 0 reports; a DDP worker only trained its share
        return 0
    if result.auto is not None:
        from routerzoo.training.auto import format_table as auto_table

        # the table's last row may be the ensemble or stack built from the candidates, not one of them
        n = sum(1 for r in result.auto["candidates"] if not r["candidate"].startswith(("ensemble(", "stack(")))
        print(f"auto: {result.auto['folds']}-fold CV of {n} candidates in "
              f"{result.auto['search_s']:.0f} s; chosen ({result.auto['method']}): {result.auto['chosen']}")
        print(auto_table(result.auto["candidates"], result.auto["chosen"]))
    for line in result.notes:
        print(line)
    print(f"router {result.router.kind!r} written to {result.router_dir}")
    if result.run_id:
        print(f"MLflow run {result.run_id} (experiment {init.tracking.experiment!r})")
    if result.model_uri and result.registered_version:
        print(f"registered as {init.tracking.register} version {result.registered_version}"
              + (f", alias @{init.tracking.alias}" if init.tracking.alias else ""))
    rows = [report | {"name": f"{name}: {report['dataset']['name']}[{report['dataset']['split']}] n={report['n_prompts']}"}
            for name, report in result.reports.items()]
    if rows:
        print(format_table(rows))
    if cfg.plot:
        print(f"plot: {cfg.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
