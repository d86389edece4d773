"""Two routers compared on served traffic: the request log and its feedback as the gate's data.

``routerzoo zoo compare CHALLENGER CHAMPION --traffic LOGDIR`` and ``zoo promote ... --if-better-than
ALIAS --traffic LOGDIR`` read the server's request log (``docs/request-log.md``), predict both
versions on every logged prompt the server routed (each decides with its own default policy), and
report:

* **agreement**: the share of routed requests where the challenger would choose the champion's model
  (and, when the challenger ran as a shadow, the agreement the server logged);
* **predicted cost**: the mean cost per request each version predicts for its own choices;
* **realised cost**: the mean logged cost of the requests each version actually routed (the champion,
  and the challenger while it was a canary);
* **mean reward**, paired: on each logged prompt where the reward of *both* versions' choices is
  known, the reward of the challenger's model against the champion's, with a paired bootstrap
  interval of the difference (:func:`routerzoo.zoo.gate.paired_mean_bootstrap`). Rewards are the
  log's feedback, averaged per (prompt, model) over requests, clients and judges; ``labels``
  datasets (e.g. ``data generate --scorer judge`` replaying the logged prompts) fill the
  (prompt, model) pairs no feedback covers. Where both versions choose the same model the difference
  is 0, so the interval only leaves 0 when their *different* choices are rated: a canary (a prompt
  asked again is answered by the other version) or judged replays provide that.

The gate promotes when the interval's lower bound exceeds ``min_improvement``. Needs a log kept with
``prompts: full`` (the versions are predicted on the texts); other segments are skipped, and a log
with no texts at all is refused in one line. Only answered (2xx) requests count.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routerzoo.data.request_log_format import SCHEMA_VERSION, read_meta, segment_files
from routerzoo.errors import UserError
from routerzoo.zoo.gate import GateResult, paired_mean_bootstrap

_REQUESTS = ("SELECT request_id, prompt, router, model, cost FROM requests "
             "WHERE status BETWEEN 200 AND 299 AND model IS NOT NULL AND prompt IS NOT NULL")
_REWARDS = "SELECT request_id, reward FROM feedback WHERE kind = 'reward'"
_SHADOW = "SELECT router, sum(agree), count(*) FROM shadow GROUP BY router"


@dataclass
class Traffic:
    """What a request log holds for a comparison.

    Attributes:
        directory: the log directory.
        routed: (prompt, router label, cost) of each answered request a router routed, in log order.
        rewards: (prompt, model) → rewards given to the answers of that model to that prompt.
        shadow: router label → (agreeing, total) shadow decisions the server logged.
        notes: what was skipped, in words.
    """

    directory: str
    routed: list[tuple[str, str, float | None]] = field(default_factory=list)
    rewards: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    shadow: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_traffic(log_dir) -> Traffic:
    """Read every segment of a request log, read-only (a running server may keep writing).

    Raises:
        UserError: no log there, a newer schema, or no segment kept with ``prompts: full``.
    """
    d = Path(log_dir)
    files = segment_files(d) if d.is_dir() else []
    if not files:
        raise UserError(f"--traffic {log_dir}: no request log there (expected requests.db: the serve config's log.dir)")
    out = Traffic(str(log_dir))
    answered: dict[str, tuple[str, str]] = {}  # request id → (prompt, model), routed or asked by name
    feedback: list[tuple[str, float]] = []
    skipped: dict[str, int] = defaultdict(int)
    shadow: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in files:
        try:
            meta = read_meta(path)
            con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
            try:
                rows = con.execute(_REQUESTS).fetchall()
                feedback += con.execute(_REWARDS).fetchall()
                for label, agree, n in con.execute(_SHADOW):
                    shadow[label][0] += int(agree or 0)
                    shadow[label][1] += int(n)
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise UserError(f"--traffic {path}: not a routerzoo request log ({exc})") from None
        if int(meta.get("schema_version", 0)) > SCHEMA_VERSION:
            raise UserError(f"--traffic {path}: request log schema {meta.get('schema_version')} is newer than this "
                            f"routerzoo reads ({SCHEMA_VERSION}); upgrade routerzoo")
        mode = meta.get("prompts", "off")
        if mode != "full":
            skipped[mode] += 1
        for rid, prompt, router, model, cost in rows:
            answered[rid] = (prompt, model)
            if router is not None:
                out.routed.append((prompt, router, cost))
    if len(skipped) and sum(skipped.values()) == len(files):
        raise UserError(f"--traffic {log_dir}: the request log was kept with prompts: {next(iter(skipped))}, so it "
                        "holds no prompt texts to predict the versions on; set log.prompts: full in the serve config")
    if skipped:
        out.notes.append("skipped segment(s) without prompt texts: "
                         + ", ".join(f"{n} with prompts: {m}" for m, n in sorted(skipped.items())))
    for rid, reward in feedback:
        if rid in answered and reward is not None:
            out.rewards.setdefault(answered[rid], []).append(float(reward))
    out.shadow = {k: (v[0], v[1]) for k, v in shadow.items()}
    if not out.routed:
        raise UserError(f"--traffic {log_dir}: the log holds no answered request a router routed (with its text)")
    return out


def dataset_labels(paths, prompts: set[str]) -> dict[tuple[str, str], float]:
    """(prompt, model) → quality from datasets' outcomes, for the logged prompts only (``--labels``)."""
    from routerzoo.data.dataset import load_dataset

    labels: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in paths or ():
        ds = load_dataset(path)
        if ds.outcomes is None:
            raise UserError(f"--labels {path}: dataset {ds.name} has no outcomes to label the traffic with")
        df = ds.outcomes[ds.outcomes["prompt"].isin(prompts)]
        for prompt, model, q in zip(df["prompt"], df["model"], df["quality"], strict=True):
            labels[(prompt, model)].append(float(q))
    return {k: float(np.mean(v)) for k, v in labels.items()}


@dataclass
class TrafficComparison:
    """A challenger against a champion on a request log (first against second)."""

    labels: tuple[str, str]  # (challenger, champion) as the log names them: name@version
    n_requests: int
    n_prompts: int
    agreement: float
    predicted_cost: tuple[float, float]
    realised_cost: tuple[float | None, float | None]
    routed: tuple[int, int]  # requests each version routed in the log
    shadow_agreement: float | None
    n_shadow: int
    n_rated: int  # prompts with a label for both versions' choices
    n_differ: int  # of those, where the two choose different models
    gate: GateResult | None
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The comparison as a small text table."""
        a, b = self.labels
        w = max(len(a), len(b), 8)

        def cost(v):
            return "-" if v is None else f"{v:.3g}"

        lines = [f"{'':<34}{a:>{w}}  {b:>{w}}",
                 f"{'agreement with ' + b:<34}{self.agreement:>{w}.3f}  {'1':>{w}}",
                 f"{'predicted cost per request (USD)':<34}{cost(self.predicted_cost[0]):>{w}}  "
                 f"{cost(self.predicted_cost[1]):>{w}}",
                 f"{'realised cost per request (USD)':<34}{cost(self.realised_cost[0]):>{w}}  "
                 f"{cost(self.realised_cost[1]):>{w}}",
                 f"{'requests it routed':<34}{self.routed[0]:>{w}}  {self.routed[1]:>{w}}"]
        if self.shadow_agreement is not None:
            lines.append(f"{'agreement logged as a shadow':<34}{self.shadow_agreement:>{w}.3f}  {'-':>{w}}"
                         f"  ({self.n_shadow} decisions)")
        if self.gate is not None:
            lines.append(f"{'mean reward (paired prompts)':<34}{self.gate.candidate:>{w}.4f}  {self.gate.incumbent:>{w}.4f}")
            lo, hi = self.gate.ci
            lines.append(f"delta {self.gate.delta:+.4f}, {self.gate.confidence:.0%} paired CI [{lo:+.4f}, {hi:+.4f}] "
                         f"over {self.n_rated} rated prompts ({self.n_differ} where the choices differ)")
        else:
            lines.append(f"mean reward: {self.n_rated} prompt(s) rated for both versions' choices; too few to compare")
        return "\n".join(lines)

    def record(self) -> dict:
        """JSON-able fields for a promotion record or a run."""
        out = {"traffic_requests": self.n_requests, "traffic_prompts": self.n_prompts, "agreement": self.agreement,
               "predicted_cost": list(self.predicted_cost), "realised_cost": list(self.realised_cost),
               "n_rated": self.n_rated, "n_differ": self.n_differ}
        if self.gate is not None:
            out |= self.gate.record()
        return out


def compare_on_traffic(candidate, incumbent, labels: tuple[str, str], traffic: Traffic,
                       extra_labels: dict[tuple[str, str], float] | None = None, *, confidence: float = 0.95,
                       min_improvement: float = 0.0, n_boot: int = 2000) -> TrafficComparison:
    """Predict both routers on the logged prompts and compare them (see the module docstring).

    Args:
        candidate: the challenger :class:`~routerzoo.routers.Router`.
        incumbent: the champion router.
        labels: their ``name@version`` as the server logs them (the log's ``router`` column).
        traffic: :func:`read_traffic`'s result.
        extra_labels: (prompt, model) → quality where no feedback exists (:func:`dataset_labels`).
    """
    prompts = list(dict.fromkeys(p for p, _, _ in traffic.routed))
    choices, costs = [], []
    for router in (candidate, incumbent):
        pred = router.predict(prompts)
        idx = np.asarray(router.decide(pred), dtype=int)
        cost = np.asarray(pred.cost, dtype=np.float64)
        cost = cost if cost.ndim == 2 else np.broadcast_to(cost, (len(prompts), len(router.models)))
        choices.append([router.models[j] for j in idx])
        costs.append(cost[np.arange(len(prompts)), idx])
    pos = {p: i for i, p in enumerate(prompts)}
    rows = np.array([pos[p] for p, _, _ in traffic.routed])
    agreement = float(np.mean([choices[0][i] == choices[1][i] for i in rows]))
    predicted = (float(costs[0][rows].mean()), float(costs[1][rows].mean()))
    realised, routed = [], []
    for label in labels:
        logged = [c for _, r, c in traffic.routed if r == label]
        known = [c for c in logged if c is not None]
        routed.append(len(logged))
        realised.append(float(np.mean(known)) if known else None)
    table = {k: float(np.mean(v)) for k, v in traffic.rewards.items()}
    for k, v in (extra_labels or {}).items():
        table.setdefault(k, v)  # feedback from the traffic wins where both exist
    cand_v, inc_v, differ = [], [], 0
    for i, p in enumerate(prompts):
        a, b = table.get((p, choices[0][i])), table.get((p, choices[1][i]))
        if a is None or b is None:
            continue
        cand_v.append(a)
        inc_v.append(b)
        differ += choices[0][i] != choices[1][i]
    gate = None
    if len(cand_v) >= 2:
        gate = paired_mean_bootstrap(np.array(cand_v), np.array(inc_v), confidence=confidence,
                                     min_improvement=min_improvement, n_boot=n_boot)
    agree, n_shadow = traffic.shadow.get(labels[0], (0, 0))
    return TrafficComparison(labels, len(traffic.routed), len(prompts), agreement, predicted,
                             (realised[0], realised[1]), (routed[0], routed[1]),
                             agree / n_shadow if n_shadow else None, n_shadow, len(cand_v), int(differ), gate,
                             list(traffic.notes))


def _too_little(result: TrafficComparison) -> str | None:
    """Why the traffic cannot tell the versions apart at all (None: it can)."""
    if result.gate is None:
        return (f"only {result.n_rated} logged prompt(s) have a reward for both versions' choices; send feedback "
                "(POST /v1/feedback), canary the challenger, or label replayed prompts (--labels)")
    if result.n_differ == 0:
        return (f"the {result.n_rated} rated prompt(s) are all ones where both versions choose the same model, so "
                "the traffic cannot tell them apart; canary the challenger or label replayed prompts (--labels)")
    return None


def describe_gate(result: TrafficComparison) -> str:
    """The gate's outcome in one line: the numbers, or why there are none."""
    reason = _too_little(result)
    if reason:
        return reason
    g = result.gate
    how = (f"{'worse' if g.delta < 0 else 'no better'} by {abs(g.delta):.4f}" if g.delta <= 0
           else f"better by {g.delta:.4f}")
    lo, hi = g.ci
    return (f"mean reward {g.candidate:.4f} vs {g.incumbent:.4f} on {result.n_rated} rated prompts of the traffic "
            f"({result.n_differ} where the choices differ): {how}; {g.confidence:.0%} paired CI [{lo:+.4f}, {hi:+.4f}], "
            f"lower bound must exceed {g.min_improvement:+.4f}")


def is_better(result: TrafficComparison) -> bool:
    """Promote: rated prompts where the choices differ, and the whole interval above ``min_improvement``."""
    return result.gate is not None and result.n_differ > 0 and result.gate.better
