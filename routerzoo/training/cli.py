"""``routerzoo train``: LightningCLI-style YAML config, every key overridable on the command line.

The router kind comes from ``--router NAME`` or the config's ``router:`` key; its typed config
dataclass becomes the ``model`` section (``--model.hidden "[512]"``, ``--model.k 10``), and
``routerzoo train --router NAME --help`` lists that router's options with their docstrings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from routerzoo.errors import ConfigError, UserError
from routerzoo.training.context import FeatureConfig
from routerzoo.training.registry import TRAINERS, get_trainer
from routerzoo.training.train import TrackingConfig

DESCRIPTION = """Train a router on a dataset's train split (validation split for early stopping),
write its artifact directory (config.json + weights.safetensors) and log the run to MLflow.

Examples:
  routerzoo train --router knn --data data/mmlu-pro --out routers/knn
  routerzoo train --config configs/routers/mlp.yaml --data data/mmlu-pro --out routers/mlp --model.hidden "[512]"
  routerzoo train --router mlp --data data/a --eval-data data/b --out routers/mlp-ab
"""


def _router_kind(argv: list[str]) -> str:
    """The router kind from ``--router`` or the ``router:`` key of ``--config`` (last one wins)."""
    kind = None
    for i, arg in enumerate(argv):
        if arg == "--router" and i + 1 < len(argv):
            kind = argv[i + 1]
        elif arg.startswith("--router="):
            kind = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv) and kind is None:
            path = Path(argv[i + 1])
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except FileNotFoundError:
                raise UserError(f"config file {path} not found") from None
            except yaml.YAMLError as exc:
                raise UserError(f"{path}: not valid YAML ({exc})") from None
            if not isinstance(loaded, dict):
                raise UserError(f"{path}: expected a mapping of keys at the top level")
            kind = loaded.get("router")
    if kind is None:
        if "-h" in argv or "--help" in argv:
            return "mlp"
        raise UserError(f"choose a router with --router NAME or a --config whose `router:` key names one; registered: {sorted(TRAINERS)}")
    return kind


def build_parser(kind: str):
    import argparse

    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

    class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help with the description's examples kept line by line."""

    config_cls, _ = get_trainer(kind).load()
    parser = ArgumentParser(prog="routerzoo train", description=DESCRIPTION, exit_on_error=False, default_env=False,
                            formatter_class=HelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file; command-line flags override its keys")
    parser.add_argument("--router", type=str, default=kind, help=f"router kind, one of {sorted(TRAINERS)}")
    parser.add_argument("--data", type=str, required=True, help="dataset directory (from `routerzoo data import`) to train on")
    parser.add_argument("--out", type=str, required=True, help="directory to write the router artifact to")
    parser.add_argument("--eval-data", type=str | None, default=None, help="another dataset to evaluate the trained router on")
    parser.add_argument("--eval-split", type=str, default="test", help="split of --eval-data to evaluate on (train|val|test|all)")
    parser.add_argument("--plot", type=str | None, default=None, help="write the --eval-data cost-quality plot (PNG) here")
    parser.add_argument("--seed", type=int, default=0, help="global random seed")
    parser.add_class_arguments(config_cls, "model", help=f"hyper-parameters of the {kind!r} router")
    parser.add_class_arguments(FeatureConfig, "features", help="prompt features (embedding encoder)")
    parser.add_class_arguments(TrackingConfig, "tracking", help="MLflow tracking")
    return parser


def main(argv: list[str]) -> int:
    import argparse

    kind = _router_kind(argv)
    get_trainer(kind)  # unknown kind → clear error before building a parser
    parser = build_parser(kind)
    try:
        cfg = parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"routerzoo train: {exc}".replace("\n", " ")) from None
    if cfg.router != kind:
        raise ConfigError(f"--router {cfg.router!r} disagrees with the router {kind!r} the config was built for")
    init = parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)
    resolved = cfg.clone()
    del resolved["config"]
    resolved_dict = resolved.as_dict()

    from routerzoo.evaluation.report import format_table
    from routerzoo.training.train import train_router

    result = train_router(
        kind, init.model, cfg.data, cfg.out,
        eval_data=cfg.eval_data, eval_split=cfg.eval_split,
        features=init.features, tracking=init.tracking, seed=cfg.seed,
        resolved_config=resolved_dict, plot=cfg.plot,
    )
    print(f"router {kind!r} written to {result.router_dir}")
    if result.run_id:
        print(f"MLflow run {result.run_id} (experiment {init.tracking.experiment!r})")
    if result.reports:
        print(format_table([
            report | {"name": f"{name}: {report['dataset']['name']}[{report['dataset']['split']}] n={report['n_prompts']}"}
            for name, report in result.reports.items()
        ]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
