"""Train the MDP router (``routerzoo.routers.policies.mdp``) by fitted Q-iteration, with Lightning.

Why fitted Q-iteration: a benchmark table knows every model's answer to every training prompt, so
the value of *any* action in *any* state can be computed offline without a simulator or
exploration; only the value of continuing needs the Q-function itself. The horizon is short
(``max_calls``), so ``max_calls`` rounds of regression make the backward induction exact on the
training states; policy gradient would need many sampled episodes for the same signal.

States trained on, per training prompt: the start (nothing called), every single call, and for
deeper horizons ``paths`` random call sequences. For a state s, the targets are

* accept: the last answer's quality;
* call k: ``−λ · cost_k + V(s + k)``, where ``V`` is the quality of k's answer when the cap forces
  accepting it, else ``max_a Q(s + k, a)`` under the previous round's network (the first round uses
  the accept value, a lower bound).

A LightningModule regresses the Q-network on the targets of valid actions (masked MSE), warm-started
from round to round. The result is an :class:`~routerzoo.routers.policies.mdp.MDPPolicy` whose
inference is numpy.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from routerzoo.errors import UserError
from routerzoo.routers.deferral.consistency import extract
from routerzoo.routers.policies.mdp import MDPConfig, MDPPolicy, state_features, valid_actions
from routerzoo.training.lightning_utils import make_trainer


class QModule(L.LightningModule):
    """Q-network (two hidden ReLU layers, one output per action) with a masked squared error."""

    def __init__(self, n_features: int, n_actions: int, hidden: int, lr: float):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_actions),
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y, mask = batch
        err = ((self.net(x) - y) ** 2) * mask
        loss = err.sum() / mask.sum().clamp_min(1.0)
        self.log("q_mse", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def numpy_params(self) -> dict[str, np.ndarray]:
        layers = [m for m in self.net if isinstance(m, torch.nn.Linear)]
        out = {}
        for i, layer in enumerate(layers, start=1):
            out[f"w{i}"] = layer.weight.detach().cpu().numpy().astype(np.float64)
            out[f"b{i}"] = layer.bias.detach().cpu().numpy().astype(np.float64)
        return out


def table_inputs(matrix, models: list[str], scorer=None):
    """(quality (n, m), cost (n, m), scores (n, m), extracted answers (n, m) object) on complete rows."""
    sub = matrix.select_models(models).complete()
    n, m = sub.quality.shape
    scores = np.zeros((n, m))
    answers = np.full((n, m), None, dtype=object)
    for j in range(m):
        responses = [None if sub.responses is None else sub.responses[i, j] for i in range(n)]
        answers[:, j] = [extract(r) for r in responses]
        if scorer is not None and n:
            lps = None if sub.token_logprobs is None else [
                None if sub.token_logprobs[i, j] is None else np.asarray(sub.token_logprobs[i, j]) for i in range(n)]
            scores[:, j] = scorer.predict(list(sub.prompts), responses, lps)
    return sub, scores, answers


def training_states(n: int, m: int, max_calls: int, paths: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """(rows, sequences): the start and every single call for each prompt, plus sampled deeper prefixes."""
    rows, seqs = [], []
    for i in range(n):
        rows.append(i)
        seqs.append([])
        for j in range(m if max_calls > 1 else 0):
            rows.append(i)
            seqs.append([j])
        for _ in range(paths if max_calls > 2 else 0):
            perm = rng.permutation(m)
            for depth in range(2, min(max_calls, m)):
                rows.append(i)
                seqs.append([int(x) for x in perm[:depth]])
    return np.asarray(rows, dtype=int), seqs


def fit_mdp(config: MDPConfig, ctx) -> tuple[MDPPolicy, dict]:
    """Fitted Q-iteration on ``ctx.train`` (see the module docstring); ``ctx.embed`` embeds prompts."""
    from routerzoo.routers.deferral.artifact import resolve_deferral

    train = ctx.train
    models = list(config.models) or list(train.models)
    missing = [x for x in models if x not in train.models]
    if missing:
        raise UserError(f"mdp: model(s) {missing} are not in the dataset; its models: {list(train.models)}")
    config.models = models
    scorer = resolve_deferral(config.scorer) if config.scorer else None
    sub, scores, answers = table_inputs(train, models, scorer)
    n, m = sub.quality.shape
    if n < 4:
        raise UserError(f"mdp needs training prompts answered by every one of its models; {n} found")
    threads = torch.get_num_threads()
    # a network this small gains nothing from intra-op threads, and on a busy machine they spin
    torch.set_num_threads(1)
    try:
        return _fit(config, ctx, train, models, scorer, sub, scores, answers)
    finally:
        torch.set_num_threads(threads)


def _fit(config: MDPConfig, ctx, train, models, scorer, sub, scores, answers) -> tuple[MDPPolicy, dict]:
    n, m = sub.quality.shape
    L.seed_everything(ctx.seed, workers=True, verbose=False)
    rng = np.random.default_rng(ctx.seed)
    emb = np.asarray(ctx.embed(list(sub.prompts)), dtype=np.float64)
    mean = emb.mean(axis=0)
    _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
    comps = vt[: min(config.pca_dims, vt.shape[0])]
    red = (emb - mean) @ comps.T
    q, c, lam, cap = sub.quality, sub.cost, config.cost_weight, config.max_calls

    rows, seqs = training_states(n, m, cap, config.paths, rng)
    feats = state_features(red[rows], seqs, scores[rows], answers[rows], cap).astype(np.float32)
    valid = valid_actions(seqs, m, cap)
    policy = MDPPolicy(config, None, scorer)
    module = QModule(feats.shape[1], m + 1, config.hidden, config.lr)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    t0 = time.perf_counter()
    history = []
    scale = None  # targets are regressed divided by one fixed scale: large λ·cost values train as well as small ones

    def params() -> dict[str, np.ndarray]:
        p = module.numpy_params()
        p["w3"], p["b3"] = p["w3"] * scale, p["b3"] * scale
        return {"pca_mean": mean, "pca_components": comps, **p}

    for it in range(config.iterations):
        target = np.zeros((len(seqs), m + 1))
        for s, (i, seq) in enumerate(zip(rows, seqs, strict=True)):
            if seq:
                target[s, 0] = q[i, seq[-1]]
        # value of every next state: forced accept at the cap, else the previous round's max Q
        nxt_rows, nxt_seqs, where = [], [], []
        for s, (i, seq) in enumerate(zip(rows, seqs, strict=True)):
            for k in np.flatnonzero(valid[s, 1:]):
                nxt = [*seq, int(k)]
                target[s, 1 + k] = -lam * c[i, k] + q[i, k]  # accept value: exact at the cap, a lower bound before
                if len(nxt) < cap and it > 0:
                    nxt_rows.append(i)
                    nxt_seqs.append(nxt)
                    where.append((s, k))
        if scale is None:
            scale = max(1.0, float(np.abs(target[valid]).max()))
        if nxt_seqs:
            policy.params = params()
            nf = state_features(red[nxt_rows], nxt_seqs, scores[nxt_rows], answers[nxt_rows], cap)
            qv = policy.q_values(nf)
            qv[~valid_actions(nxt_seqs, m, cap)] = -np.inf
            best = qv.max(axis=1)
            for (s, k), v, i in zip(where, best, nxt_rows, strict=True):
                target[s, 1 + k] = -lam * c[i, k] + max(v, q[i, k])
        ds = TensorDataset(torch.from_numpy(feats), torch.from_numpy((target / scale).astype(np.float32)),
                           torch.from_numpy(valid.astype(np.float32)))
        # all ``epochs`` passes in one Lightning epoch (a sampler drawing N·epochs states): the
        # per-epoch overhead would otherwise dominate fits this small
        trainer = make_trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        gen = torch.Generator().manual_seed(ctx.seed + it)
        sampler = RandomSampler(ds, replacement=False, num_samples=len(ds) * config.epochs, generator=gen)
        trainer.fit(module, DataLoader(ds, batch_size=config.batch_size, sampler=sampler))
        history.append(float(trainer.callback_metrics.get("q_mse", float("nan"))))
    policy.params = params()
    return policy, {"n_prompts": int(n), "n_states": int(len(seqs)), "q_mse": history, "fit_s": time.perf_counter() - t0}


def evaluate_mdp(policy: MDPPolicy, matrix) -> dict:
    """Mean cost (every call), quality and calls per prompt of the policy run offline on ``matrix``."""
    from routerzoo.evaluation.sequential import run_offline

    sub = matrix.select_models(policy.config.models)
    r = run_offline(policy, sub)
    k = r["known"]
    if not k.any():
        return {"n_prompts": 0}
    return {"n_prompts": int(k.sum()), "cost": float(r["cost"][k].mean()), "quality": float(r["quality"][k].mean()),
            "calls_per_prompt": float(r["n_calls"][k].mean())}


def _sequential_report(policy: MDPPolicy, matrix) -> dict:
    """The report ``routerzoo eval`` gives the policy (AIQ of its point, gap closed), for tracking; {} if none."""
    from routerzoo.evaluation.artifact_eval import evaluate_policy

    try:
        return evaluate_policy(policy, matrix)
    except UserError:  # e.g. no prompt with every outcome: the point metrics above say so
        return {}


def train_mdp(config: MDPConfig, data, out, *, overwrite: bool = False, seed: int = 0,
              tracking=None) -> tuple[MDPPolicy, Path, dict]:
    """Fit on ``data``'s train split, evaluate on val and test, write the artifact to ``out``.

    ``tracking``: a :class:`~routerzoo.training.train.TrackingConfig` to log the run, the artifact
    and its pyfunc model to MLflow (and register it) as router training does; None: not tracked.
    """
    from routerzoo.data.dataset import load_dataset
    from routerzoo.data.fsutil import check_output_dir
    from routerzoo.routers.policies.mdp import save_mdp
    from routerzoo.training.train_deferral import DeferralFitContext, role_lineage, tracked_run

    check_output_dir(out, overwrite=overwrite, what="MDP router artifact")
    ds = load_dataset(data)
    if ds.outcomes is None:
        raise UserError(f"{data}: the MDP router trains on benchmark outcomes; this dataset has none")
    with tracked_run(tracking, "mdp", ds, config, seed) as run:
        ctx = DeferralFitContext(ds.outcome_matrix("train"), ds.outcome_matrix("val"), config.encoder, seed)
        policy, metrics = fit_mdp(config, ctx)
        policy._encoder = ctx._encoder  # reuse the loaded encoder for evaluation
        reports = {}
        for split in ("val", "test"):
            m = ds.outcome_matrix(split)
            if len(m):
                metrics[split] = evaluate_mdp(policy, m)
                if run.run_id is not None:  # the full report (AIQ, gap closed) only where it is logged
                    reports[split] = _sequential_report(policy, m)
        lineage = role_lineage(ds, config.encoder, seed, run) | {
            "fit_split": "train", "metrics": {k: v for k, v in metrics.items() if k in ("val", "test", "n_prompts")}}
        path = save_mdp(policy, out, lineage=lineage, overwrite=overwrite)
        logged = run.log_result({k: v for k, v in metrics.items() if k not in reports}, reports, path)
    if logged.get("version") is not None:  # the registered version, for the command's report
        metrics["registered_version"] = logged["version"]
    return policy, Path(path), metrics
