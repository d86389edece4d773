"""The ``feedback`` section of the serve config: rewards from clients for a router that learns online."""

from __future__ import annotations

import math
from dataclasses import dataclass

from routerzoo.errors import ConfigError


@dataclass
class FeedbackConfig:
    """``POST /v1/feedback`` (see :mod:`routerzoo.serving.feedback`).

    Attributes:
        state_dir: directory of the feedback log (``feedback.jsonl``, every accepted reward, synced
            to disk before the reply) and the learnt state (``state.safetensors``); created if
            missing. On start-up the state is restored and the log's newer entries are learnt again,
            so a restart loses no accepted reward. The log holds the routing text of each rewarded
            request (the learner needs it): keep the directory as private as the prompts.
        flush_every: learn once this many rewards are pending.
        flush_interval_s: learn pending rewards at least this often, seconds.
        max_tracked: most recent routed requests remembered for feedback (older ids get 404).
        max_tracked_bytes: bound on the routing text those requests keep in memory, bytes (the
            oldest are forgotten first). Each keeps only what an encoder can read (16,384
            characters), whatever the prompt's size.
    """

    state_dir: str = ""
    flush_every: int = 32
    flush_interval_s: float = 5.0
    max_tracked: int = 100_000
    max_tracked_bytes: int = 64 * 1024 * 1024

    def __post_init__(self):
        if not self.state_dir:
            raise ConfigError("feedback.state_dir must name a directory for the feedback log and learnt state")
        if self.flush_every < 1:
            raise ConfigError(f"feedback.flush_every must be >= 1, got {self.flush_every}")
        if not (math.isfinite(self.flush_interval_s) and self.flush_interval_s > 0):
            raise ConfigError(f"feedback.flush_interval_s must be > 0, got {self.flush_interval_s}")
        if self.max_tracked_bytes < 1:
            raise ConfigError(f"feedback.max_tracked_bytes must be >= 1, got {self.max_tracked_bytes}")
        if self.max_tracked < 1:
            raise ConfigError(f"feedback.max_tracked must be >= 1, got {self.max_tracked}")
