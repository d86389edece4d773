"""One CLI stack: `routerzoo train KIND` for every role (router, deferral scorer, trained policy) parsed from the
kind's typed config, and every command an ordinary subcommand of one top-level parser."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from cascade_data import cascade_table
from conftest import REPO

from routerzoo.cli import build_parser, main
from routerzoo.data.dataset import make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import ConfigError
from routerzoo.routers import KINDS, load
from routerzoo.training.cli import resolve_kind

#: one kind of each role, a config field of its own and a bad value for it (caught by its __post_init__)
ROLES = {
    "router": ("knn", "--router.k_candidates", ["--router.k", "0"], "router.k must be >= 1"),
    "deferral": ("token-quantile", "--router.quantiles", ["--router.l2", "-1"], "l2 must be >= 0"),
    "policy": ("mdp", "--router.max_calls", ["--router.max_calls", "0"], "max_calls must be >= 1"),
}
FAST_MDP = ["--router.epochs", "5", "--router.iterations", "1", "--router.hidden", "16", "--router.pca_dims", "4"]


def _one_line_error(capsys, args: list[str], message: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    """A three-model table with responses and token logprobs: what deferral scorers and the MDP train on."""
    root = tmp_path_factory.mktemp("stack")
    return save_dataset(make_dataset(cascade_table(90), name="answers", split=SplitSpec(val=0.2, test=0.3)), root / "ds")


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("form", ["positional", "flag"])
def test_help_is_generated_from_the_kinds_typed_config(role, form, capsys):
    kind, field, _, _ = ROLES[role]
    args = ["train", kind, "--help"] if form == "positional" else ["train", "--router", kind, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: routerzoo train")
    assert field in out and f"default: {kind}" in out  # the kind's own fields, with the kind as --kind's default
    assert "--tracking.register" in out and "--data" in out  # every role is tracked and registered the same way
    assert ("--cv.folds" in out) == (role == "router")  # groups by role, not by kind


@pytest.mark.parametrize("kind", sorted(k for k, spec in KINDS.items() if spec.role != "policy" or spec.fit))
def test_every_trainable_kind_lists_every_config_field(kind, capsys):
    """The registry is the only list: a new kind's --help needs no CLI change."""
    with pytest.raises(SystemExit) as exc:
        main(["train", kind, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    missing = [f.name for f in dataclasses.fields(KINDS[kind].load_config()) if f"--router.{f.name} " not in out]
    assert not missing, missing


@pytest.mark.parametrize("role", sorted(ROLES))
def test_unknown_flag_is_one_line_for_every_role(role, tmp_path, capsys):
    kind = ROLES[role][0]
    _one_line_error(capsys, ["train", "--router", kind, "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--no-such-flag", "1"], "unrecognized arguments: --no-such-flag")
    _one_line_error(capsys, ["train", kind, "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--router.no_such_field", "1"], "no_such_field")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_typed_config_errors_are_one_line(role, tmp_path, capsys):
    kind, _, bad, message = ROLES[role]
    _one_line_error(capsys, ["train", kind, "--data", str(tmp_path), "--out", str(tmp_path / "o"), *bad], message)
    # a value of the wrong type is refused by the parser, naming the flag
    _one_line_error(capsys, ["train", kind, "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                             bad[0], "not-a-number"], bad[0].removeprefix("--"))


def test_kind_comes_from_a_parser_not_a_scan(tmp_path):
    cfg = tmp_path / "tq.yaml"
    cfg.write_text("kind: token-quantile\nrouter:\n  l2: 2.0\n")
    assert resolve_kind(["knn", "--data", "d"]) == ("knn", ["--data", "d"])
    assert resolve_kind(["--data", "d", "--router", "mlp", "--router.hidden", "[8]"]) == ("mlp", ["--data", "d", "--router.hidden", "[8]"])
    assert resolve_kind(["--kind=elo", "--router.k", "5"]) == ("elo", ["--router.k", "5"])  # not --router's abbreviation
    # the config's kind; stage 2 reads the file first, so the flags after it override its keys
    assert resolve_kind(["--router.l2", "3", "--config", str(cfg)]) == ("token-quantile", ["--config", str(cfg), "--router.l2", "3"])
    assert resolve_kind(["--data", "d"]) == (None, ["--data", "d"])
    with pytest.raises(ConfigError, match="disagrees with `kind: token-quantile`"):
        resolve_kind(["--router", "knn", "--config", str(cfg)])
    with pytest.raises(ConfigError, match="names kind 'knn', --router names 'mlp'"):
        resolve_kind(["knn", "--router", "mlp"])
    with pytest.raises(ConfigError, match="expected one argument"):
        resolve_kind(["--router"])


def test_unknown_and_untrained_kinds_are_one_line(capsys):
    err = _one_line_error(capsys, ["train", "nope", "--data", "d", "--out", "o"], "unknown router 'nope'")
    assert "token-quantile" in err and "mdp" in err  # it lists what `train` trains, every role
    _one_line_error(capsys, ["train", "--router", "cascade", "--data", "d", "--out", "o"], "policy 'cascade' is not trained")


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("[dp]*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_deferral_and_policy_configs_parse(config):
    """Every shipped deferral / policy YAML matches its kind's typed config through the same stack as routers."""
    import yaml

    from routerzoo.routers.registry import get_kind
    from routerzoo.training.cli import build_parser as train_parser

    kind = yaml.safe_load(config.read_text())["kind"]
    parser = train_parser(kind)
    init = parser.instantiate_classes(parser.parse_args(["--config", str(config), "--data", "d", "--out", "o"]))
    assert isinstance(init.router, get_kind(kind).load_config())


def test_deferral_scorer_trains_tracked_and_registered_through_the_one_entry(answers, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "tq"
    # the flags deferral training took before the one stack still work: `--overwrite` without a value,
    # --router.FIELD=VALUE, --next-model, a --config with `kind:`
    args = ["train", "--config", str(REPO / "configs/deferral/token-quantile.yaml"), "--data", str(answers),
            "--out", str(out), "--router.model=small", "--next-model", "mid", "--overwrite",
            "--tracking.tracking_uri", uri, "--tracking.register", "tq", "--tracking.alias", "champion"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "MLflow run " in printed and "registered as tq version 1, alias @champion" in printed
    metrics = json.loads(printed[printed.index("{"):])
    assert metrics["test"]["auroc"] > 0.6
    scorer = load(out)
    assert scorer.config.model == "small"
    registered = load("models:/tq@champion", tracking_uri=uri)
    assert type(registered) is type(scorer) and registered.config == scorer.config
    assert json.loads((out / "config.json").read_text())["lineage"]["mlflow_run_id"] in printed


def test_mdp_trains_tracked_and_registered_through_the_one_entry(answers, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "mdp"
    assert main(["train", "mdp", "--data", str(answers), "--out", str(out), "--router.cost_weight", "3000", *FAST_MDP,
                 "--tracking.tracking_uri", uri, "--tracking.register", "mdp-policy"]) == 0
    printed = capsys.readouterr().out
    assert "MLflow run " in printed and "registered as mdp-policy version 1" in printed
    trained = json.loads(printed[printed.index("{"):])["test"]
    policy = load(out)
    assert policy.config.cost_weight == 3000.0 and policy.config.max_calls == 2
    # the loaded artifact is the policy training evaluated: the same offline run on the test split
    from routerzoo.data.dataset import load_dataset
    from routerzoo.training.mdp import evaluate_mdp

    again = evaluate_mdp(policy, load_dataset(answers).outcome_matrix("test"))
    assert again["n_prompts"] == trained["n_prompts"] and again["calls_per_prompt"] == trained["calls_per_prompt"]
    assert again["cost"] == pytest.approx(trained["cost"]) and again["quality"] == pytest.approx(trained["quality"])
    assert load("models:/mdp-policy/1", tracking_uri=uri).config == policy.config


def test_every_command_is_a_subcommand_of_one_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    listed = capsys.readouterr().out
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("data", "train", "eval", "routers", "demo", "serve", "calibrate", "calibrate-cascade", "assign", "zoo"):
        assert name in commands and f"\n    {name}" in listed, name
    for name in ("calibrate", "calibrate-cascade", "assign", "zoo"):  # their own help, from the same parser
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0 and f"usage: routerzoo {name}" in capsys.readouterr().out
    # an unknown flag of an ordinary command is argparse's usage error, not passed on
    with pytest.raises(SystemExit) as exc:
        main(["routers", "--no-such-flag"])
    assert exc.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_building_the_parser_imports_nothing_heavy():
    """`import routerzoo.cli` and its parser stay cheap: handlers import training code, the solver, MLflow when they run."""
    code = ("import sys; from routerzoo.cli import build_parser; build_parser(); "
            "heavy = ('numpy', 'pandas', 'jsonargparse', 'mlflow', 'torch', 'lightning', 'scipy'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('routerzoo.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
