"""``routerzoo train --router mdp``: parse and check the config before importing Lightning."""

from __future__ import annotations

import argparse
import json

from routerzoo.routers.policies.mdp import MDPConfig


def main(argv: list[str]) -> int:
    """``routerzoo train --router mdp --data DIR --out DIR [--router.FIELD VALUE ...]``."""
    from routerzoo.routers.core.typed_config import config_from_dict
    from routerzoo.training.train_deferral import parse_router_fields, split_tracking

    p = argparse.ArgumentParser(prog="routerzoo train", description="Train the MDP router (fitted Q-iteration). "
                                "Config fields: --router.FIELD VALUE (see configs/policies/mdp.yaml); "
                                "--tracking.FIELD VALUE (e.g. --tracking.register NAME) logs the run to MLflow.")
    p.add_argument("--kind", default="mdp")
    p.add_argument("--config", help="YAML with `kind: mdp` and a `router:` mapping of config fields")
    p.add_argument("--data", required=True, help="dataset directory with outcomes (and responses)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--seed", type=int, default=0)
    known, rest = p.parse_known_args(argv)
    tracking, rest = split_tracking(rest)
    fields = parse_router_fields(known.config, rest, "mdp")
    config = config_from_dict(MDPConfig, fields, "mdp config")  # a bad field ends here, before torch loads
    from routerzoo.training.mdp import train_mdp

    _, path, metrics = train_mdp(config, known.data, known.out, overwrite=known.overwrite, seed=known.seed,
                                 tracking=tracking)
    print(f"MDP router written to {path}")
    print(json.dumps(metrics, indent=2, default=float))
    return 0
