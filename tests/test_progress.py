"""Progress in a log (stderr not a terminal): plain lines at the start, every interval and at the end."""

from __future__ import annotations

import sys

import pytest

from routerzoo import progress


def test_mode_maps_the_progress_argument(monkeypatch):
    assert progress.mode(True) == "bar" and progress.mode(False) == "off"
    assert progress.mode("lines") == "lines"
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert progress.mode(None) == "lines"
    monkeypatch.setitem(sys.modules, "ipykernel", object())  # a notebook: tqdm.auto draws its widget
    assert progress.mode(None) == "bar"
    with pytest.raises(ValueError, match="progress must be"):
        progress.mode("loud")


def test_lines_print_start_interval_and_done(capsys, monkeypatch):
    monkeypatch.setenv("ROUTERZOO_PROGRESS_INTERVAL", "0")  # every update prints
    with progress.bar(3, "encoding", "prompt", "lines") as bar:
        bar.update(2)
        bar.set_description("encoding (2 left)")
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("encoding: 0/3 prompts") and lines[0].endswith("(started)")
    assert lines[1].startswith("encoding: 2/3 prompts") and lines[1].endswith("(running)")
    assert lines[-1].startswith("encoding (2 left): 3/3 prompts") and lines[-1].endswith("(done)")


def test_lines_are_rate_limited(capsys, monkeypatch):
    monkeypatch.setenv("ROUTERZOO_PROGRESS_INTERVAL", "3600")
    bar = progress.bar(1000, "folds", "fold", "lines")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    bar.close()  # idempotent
    assert [line.rsplit("(", 1)[1] for line in capsys.readouterr().err.splitlines()] == ["started)", "done)"]


def test_off_prints_nothing(capsys):
    bar = progress.bar(5, "x", "it", False)
    bar.update(5)
    bar.close()
    assert bar.n == 5 and capsys.readouterr().err == ""


def test_train_in_a_log_shows_encoding_folds_and_epochs(capsys, monkeypatch, tmp_path, topic_dataset):
    """`routerzoo train` whose stderr is a file: encoding, CV folds and the fit's epochs appear as lines."""
    from routerzoo.cli import main

    monkeypatch.setenv("ROUTERZOO_PROGRESS_INTERVAL", "0")
    rc = main(["train", "--router", "mf", "--data", str(topic_dataset), "--out", str(tmp_path / "mf"),
               "--features.cache_dir", str(tmp_path / "cache"), "--tracking.enabled", "false",
               "--router.max_epochs", "3", "--cv.folds", "3"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "encoding (all-MiniLM-L6-v2): 0/" in err and "(done)" in err
    assert "mf (val loss" in err and "/3 epochs" in err
    assert "CV mf: 3/3 folds" in err
