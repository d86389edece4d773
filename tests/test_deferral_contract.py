"""One contract over every registered deferral scorer (the router contract suite covers routers only):
each kind is trained (or configured) on a synthetic cascade table through ``train_deferral``, then
checked: artifact layout and no pickle; fitted ≡ saved-and-loaded (to the bit); a batch ≡ one answer
at a time; probabilities of shape (n,) in [0, 1]; answers without logprobs or text still scored;
learned kinds beat chance on held-out answers; YAML configs repeat the defaults; ``routerzoo train``
trains a deferral kind and refuses a bad option in one line.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cascade_data import cascade_table
from conftest import ENCODER_ATOL

from routerzoo.data.dataset import load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import UserError
from routerzoo.routers.core.artifact import CONFIG_FILE, WEIGHTS_FILE, ArtifactError
from routerzoo.routers.deferral.artifact import load_deferral, save_deferral
from routerzoo.routers.deferral.token_quantile import answers_for_training
from routerzoo.routers.registry import kinds
from routerzoo.training.train_deferral import missing_reads, train_deferral

DEFERRAL_KINDS = sorted(kinds("deferral"))
# the stage each kind scores on the fixture (small → mid); unsupervised kinds take their defaults
STAGE = {"token-quantile": {"model": "small"}, "posthoc-deferral": {"model": "small", "next_model": "mid"},
         "prompt-response": {"model": "small"}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("deferral")
    data = save_dataset(make_dataset(cascade_table(160), name="cascade", split=SplitSpec(val=0.2, test=0.4)), root / "ds")
    out = {}
    for kind in DEFERRAL_KINDS:
        cfg = kinds("deferral")[kind].load_config()(**STAGE.get(kind, {}))
        if missing_reads(kind, load_dataset(data).outcome_matrix("train")):
            # consistency reads k samples per answer, which a table does not hold: training refuses
            # the table, so the configured scorer is saved as it is
            scorer = kinds("deferral")[kind].load_class()(cfg)
            out[kind] = (scorer, save_deferral(scorer, root / kind), None)
        else:
            out[kind] = train_deferral(kind, cfg, data, root / kind, next_model="mid")
    return data, out


def _answers(data, split="test", model="small"):
    return answers_for_training(load_dataset(data).outcome_matrix(split), model)


@pytest.mark.parametrize("kind", DEFERRAL_KINDS)
def test_artifact_round_trip_and_batch_equals_single(kind, trained, tmp_path):
    data, results = trained
    scorer, path, _ = results[kind]
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["role"] == "deferral" and config["kind"] == kind
    assert config["config"] == dataclasses.asdict(scorer.config)
    loaded = load_deferral(path)
    _, _, prompts, responses, lps, _ = _answers(data)
    a = scorer.predict(prompts, responses, lps)
    b = loaded.predict(prompts, responses, lps)
    assert a.shape == (len(prompts),) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a, b, rtol=0, atol=ENCODER_ATOL)  # the fitted scorer read cached embeddings
    singles = np.concatenate([loaded.predict([p], [r], [lp]) for p, r, lp in zip(prompts[:8], responses[:8], lps[:8], strict=True)])
    np.testing.assert_allclose(singles, b[:8], rtol=1e-9, atol=1e-12)
    assert loaded.predict([], [], []).shape == (0,)
    # answers without logprobs or without text are scored, not refused
    bare = loaded.predict(prompts[:3], [None, "x", None], None)
    assert bare.shape == (3,) and np.all(np.isfinite(bare))
    tampered = tmp_path / "t"
    shutil.copytree(path, tampered)
    (tampered / "extra.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ArtifactError, match="never contain pickled"):
        load_deferral(tampered)
    (tampered / "extra.pkl").unlink()
    (tampered / WEIGHTS_FILE).write_bytes((tampered / WEIGHTS_FILE).read_bytes() + b" ")
    with pytest.raises(ArtifactError, match="sha256"):
        load_deferral(tampered)


@pytest.mark.parametrize("kind", DEFERRAL_KINDS)
def test_evaluation_and_learned_kinds_beat_chance(kind, trained):
    data, results = trained
    _, _, metrics = results[kind]
    if metrics is None:  # refused by training: the table lacks what it reads
        with pytest.raises(UserError, match=f"the {kind!r} scorer reads"):
            train_deferral(kind, None, data, data.parent / f"{kind}-refused")
        assert not (data.parent / f"{kind}-refused").exists()
        return
    test = metrics["test"]
    assert test["n_answers"] > 0
    if metrics is None:  # refused by training: the table lacks what it reads
        with pytest.raises(UserError, match=f"the {kind!r} scorer reads"):
            train_deferral(kind, None, data, data.parent / f"{kind}-refused")
        assert not (data.parent / f"{kind}-refused").exists()
        return
    if kind != "posthoc-deferral":  # which predicts "keeping loses nothing", not correctness itself
        assert test["auroc"] > 0.65, test
    assert test["deferral_auc"] > test["random_auc"] + 0.02, test


def test_yaml_configs_match_defaults():
    import yaml
    from conftest import REPO

    for kind in DEFERRAL_KINDS:
        doc = yaml.safe_load((REPO / "configs" / "deferral" / f"{kind}.yaml").read_text())
        assert doc["kind"] == kind
        assert doc["router"] == dataclasses.asdict(kinds("deferral")[kind].load_config()()), kind


def test_routerzoo_train_trains_a_deferral_kind(trained, tmp_path):
    data, _ = trained
    cmd = [sys.executable, "-m", "routerzoo", "train", "--router", "token-quantile", "--data", str(data),
           "--out", str(tmp_path / "tq"), "--router.model", "small", "--next-model", "mid"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "auroc" in proc.stdout and load_deferral(tmp_path / "tq").config.model == "small"
    bad = subprocess.run(cmd[:9] + [str(tmp_path / "bad"), "--router.model", "gpt-9"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "gpt-9" in bad.stderr and "Traceback" not in bad.stderr
