"""The command line as a user runs it: every command has --help, errors are one line, exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, topic_outcomes

from routerzoo.cli import main


def run_cli(*args, cwd=None):
    """Run the real ``routerzoo`` entry point in a subprocess."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run([sys.executable, "-m", "routerzoo", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    "args",
    [[], ["data"], ["data", "import"], ["data", "show"], ["data", "split"], ["data", "formats"], ["train"],
     ["train", "--router", "knn"], ["train", "--router", "mlp"], ["eval"], ["routers"], ["demo"]],
)
def test_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "routers").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(config):
    """Every shipped YAML matches its router's typed config (litgpt's config-hub test)."""
    import yaml

    from routerzoo.routers.registry import get_kind
    from routerzoo.training.cli import build_parser

    kind = yaml.safe_load(config.read_text())["kind"]
    parser = build_parser(kind)
    cfg = parser.parse_args(["--config", str(config), "--data", "d", "--out", "o"])
    init = parser.instantiate_classes(cfg)
    assert isinstance(init.router, get_kind(kind, role="router").load_config())


def test_old_style_config_is_explained(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("router: knn\nmodel:\n  k: 5\n")
    assert main(["train", "--config", str(old), "--data", "d", "--out", "o"]) == 2
    assert "`kind: NAME` and its settings under `router:`" in capsys.readouterr().err


def _write_long_csv(path: Path, prefix: str, seed: int) -> Path:
    df = topic_outcomes(60, seed=seed, prefix=prefix)
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """Two datasets with the same models and different prompts, imported through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    for name, seed in (("a", 1), ("b", 2)):
        src = _write_long_csv(root / f"{name}.csv", prefix=name, seed=seed)
        proc = run_cli("data", "import", src, "--format", "long", "--out", root / name, "--stratify")
        assert proc.returncode == 0, proc.stderr
        assert "imported 120 prompts, 3 models" in proc.stdout
    return root


def test_train_without_router_trains_the_default(two_datasets, capsys):
    from routerzoo.routers.registry import DEFAULT_ROUTER, KINDS

    out = two_datasets / "default"
    argv = ["train", "--data", str(two_datasets / "a"), "--out", str(out), "--tracking.enabled", "false"]
    if DEFAULT_ROUTER == "auto":  # a search over kinds: two cheap candidates keep the test fast
        argv += ["--auto.candidates", '["knn:k=10", "sw-elo"]', "--cv.folds", "3"]
    else:
        assert KINDS[DEFAULT_ROUTER].role == "router"
    assert main(argv) == 0
    assert f"training the default router {DEFAULT_ROUTER!r}" in capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    if DEFAULT_ROUTER == "auto":
        assert saved["kind"] in ("knn", "sw-elo", "stack") and "auto" in saved["lineage"]
    else:
        assert saved["kind"] == DEFAULT_ROUTER


def test_train_on_one_dataset_evaluate_on_another(two_datasets, capsys):
    root = two_datasets
    proc = run_cli(
        "train", "--config", REPO / "configs/routers/knn.yaml", "--data", root / "a", "--out", root / "knn",
        "--eval-data", root / "b", "--eval-split", "all", "--router.k", "5",
        "--tracking.tracking_uri", f"sqlite:///{root / 'mlflow.db'}", "--plot", root / "train-eval.png",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    assert "eval: b[all] n=120" in proc.stdout
    assert json.loads((root / "knn" / "config.json").read_text())["config"]["k"] == 5  # CLI override won
    assert (root / "train-eval.png").stat().st_size > 10_000

    proc = run_cli("eval", root / "knn", "--data", root / "b", "--split", "all", "--json", root / "r.json",
                   "--plot", root / "r.png", "--strong", "big", "--weak", "math-small")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((root / "r.json").read_text())
    assert report["dataset"]["name"] == "b" and report["n_prompts"] == 120
    assert {"cost_weight", "cost", "quality"} <= set(report["curve"][0])
    assert report["gap_closed"] > 0.3  # the topic signal transfers across datasets
    assert report["apgr"] is not None and "cpt50" in report
    assert (root / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "gap closed" in proc.stdout and "APGR" in proc.stdout and "CPT(80%)" in proc.stdout

    # side by side: one table, one plot, a JSON keyed by router
    assert main(["train", "--router", "random", "--data", str(root / "a"), "--out", str(root / "random"),
                 "--tracking.enabled", "false"]) == 0
    assert main(["eval", str(root / "knn"), str(root / "random"), "--data", str(root / "b"), "--split", "all",
                 "--json", str(root / "both.json"), "--plot", str(root / "both.png")]) == 0
    both = json.loads((root / "both.json").read_text())["reports"]
    assert set(both) == {"knn", "random"} and both["knn"]["gap_closed"] > both["random"]["gap_closed"]
    assert (root / "both.png").stat().st_size > 10_000

    show = run_cli("data", "show", root / "b")
    assert show.returncode == 0 and "oracle quality" in show.stdout and "big" in show.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--router", "nope", "--data", "x", "--out", "y"], "unknown router 'nope'"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--router.k", "abc"], "router.k"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--router.k", "0"], "router.k must be >= 1"),
        (["train", "--router", "knn", "--data", "{tmp}/missing", "--out", "{tmp}/o"], "not a routerzoo dataset"),
        (["train", "--config", "{tmp}/missing.yaml", "--data", "x", "--out", "y"], "config file"),
        (["eval", "{tmp}/no-router", "--data", "{a}"], "not a router artifact"),
        (["train", "--router", "mlp", "--data", "{a}", "--out", "{tmp}/o", "--router.accelerator", "tpu"], "router.accelerator must be one of"),
        (["train", "--router", "mlp", "--data", "{a}", "--out", "{tmp}/o", "--router.devices", "abc"], "router.devices"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--features.batch_size", "0"], "--features.batch_size must be >= 1"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--features.device", "cuda"], "--features.device cuda"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--eval-data", "{a}", "--eval-split", "foo"], "--eval-split 'foo'"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{a}"], "already exists and is not empty"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{a}/dataset.json"], "is a file"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--eval-data", "{a}", "--plot", "{tmp}/p.txt"], "use a .png"),
        (["train", "--router", "knn", "--data", "{a}", "--out", "{tmp}/o", "--plot", "{tmp}/p.png"], "pass --eval-data"),
        (["eval", "{tmp}/no-router", "--data", "{a}", "--json", "{tmp}"], "is a directory"),
        (["eval", "{tmp}/no-router", "--data", "{a}", "--plot", "{tmp}/x.jpeg2"], "use a .png"),
        (["data", "show", "{tmp}"], "not a routerzoo dataset"),
        (["data", "import", "{tmp}/nothing.csv", "--format", "long", "--out", "{tmp}/x"], "nothing.csv"),
        (["data", "import", "{tmp}/a.csv", "--format", "no-such-format", "--out", "{tmp}/x"], "no-such-format"),
    ],
)
def test_user_errors_are_one_line(args, message, two_datasets, tmp_path, capsys):
    args = [a.format(a=two_datasets / "a", tmp=tmp_path) for a in args]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err, err
    assert err.count("\n") == 1, err  # one line
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_side_by_side_needs_the_same_candidates(two_datasets, tmp_path, capsys):
    df = topic_outcomes(10)
    df[df["model"] != "big"].to_csv(tmp_path / "c.csv", index=False)
    assert main(["data", "import", str(tmp_path / "c.csv"), "--format", "long", "--out", str(tmp_path / "c")]) == 0
    for name, data in (("two", tmp_path / "c"), ("three", two_datasets / "a")):
        assert main(["train", "--router", "best-single", "--data", str(data), "--out", str(tmp_path / name), "--tracking.enabled", "false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "two"), str(tmp_path / "three"), "--data", str(two_datasets / "a")]) == 2
    assert "need the same candidate models" in capsys.readouterr().err


def test_eval_with_models_missing_from_dataset(two_datasets, tmp_path, capsys):
    df = topic_outcomes(10)
    df = df[df["model"] != "big"]
    df.to_csv(tmp_path / "c.csv", index=False)
    assert main(["data", "import", str(tmp_path / "c.csv"), "--format", "long", "--out", str(tmp_path / "c")]) == 0
    assert main(["train", "--router", "best-single", "--data", str(two_datasets / "a"), "--out", str(tmp_path / "bs"), "--tracking.enabled", "false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "bs"), "--data", str(tmp_path / "c")]) == 2
    assert "no data for candidate model(s) ['big']" in capsys.readouterr().err


def test_single_model_dataset_is_refused_with_a_reason(tmp_path, capsys):
    """One candidate: nothing to route between; training says so instead of fitting a no-op."""
    df = topic_outcomes(10)
    df[df["model"] == "big"].to_csv(tmp_path / "one.csv", index=False)
    assert main(["data", "import", str(tmp_path / "one.csv"), "--format", "long", "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    assert main(["train", "--router", "knn", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "r"),
                 "--tracking.enabled", "false"]) == 2
    assert "needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_ctrl_c_during_an_mlp_fit_exits_130_and_writes_nothing(two_datasets, tmp_path):
    """SIGINT mid-fit: "interrupted" on stderr, exit 130, no artifact (Lightning's own handler
    would exit 1 silently)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "mlp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "routerzoo", "train", "--router", "mlp", "--data", str(two_datasets / "a"), "--out", str(out),
         "--router.max_epochs", "1000000", "--router.patience", "1000000", "--tracking.enabled", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test runner started in the background inherits SIGINT as ignored; a terminal's Ctrl-C is not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(15)  # imports, encoding (cached), then well into the fit
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a million-epoch fit running
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not out.exists()
