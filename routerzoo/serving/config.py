"""Typed configuration of the router server (``routerzoo serve --config serve.yaml``).

Every section is a dataclass with a docstring per field and its own validation; YAML is read through
:func:`routerzoo.routers.core.typed_config.config_from_dict`, so an unknown key or a value of the wrong
type is refused with a message naming the key (``serve.yaml: backends['big'].timeout_s: expected a
finite number, got 'slow'``). Command-line flags (``--backend``, ``--name``, ...) override the file.

Nothing here does I/O except :func:`load_config` (reading the YAML) and :meth:`AuthConfig.key_hashes`
(reading the environment variable named in the config).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from routerzoo.errors import ConfigError
from routerzoo.serving.cascade_config import SERVE_MODES, CascadeServeConfig
from routerzoo.serving.feedback_config import FeedbackConfig
from routerzoo.serving.request_log import RequestLogConfig
from routerzoo.serving.rollout import CanaryConfig

ROUTING_INPUTS = ("last_user", "conversation")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a number >= 0, got {value}")


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value}")


@dataclass
class PriceConfig:
    """A price override for one backend.

    Attributes:
        input: USD per 1M prompt tokens.
        output: USD per 1M completion tokens.
    """

    input: float
    output: float

    def __post_init__(self):
        _non_negative("input", self.input)
        _non_negative("output", self.output)


@dataclass
class BackendConfig:
    """One OpenAI-compatible backend serving one candidate model of the router.

    Attributes:
        base_url: the backend's OpenAI-compatible API root, ending in ``/v1``
            (e.g. ``http://10.0.0.5:8000/v1`` for vLLM, ``http://127.0.0.1:11434/v1`` for Ollama).
        model: the backend's own model id, sent as ``model`` upstream; empty = the candidate's name.
        api_key_env: name of the environment variable holding the backend's API key (sent as
            ``Authorization: Bearer``); empty = no key. The key itself never goes in the file.
        timeout_s: longest one upstream attempt may take, seconds: to the complete answer, or to a
            stream's first event (waiting for a free slot included); also the longest silence
            between a stream's events. Then the attempt is retried or the request falls back.
        connect_timeout_s: TCP connect timeout, seconds; short, so a dead host fails over quickly.
        max_concurrency: most requests in flight to this backend at once; more wait for a slot.
        prices: price override for cost estimates and routing decisions (USD per 1M tokens);
            None = the router's training prices (or ``--prices``).
        context_window: the model's context length in tokens (0 = unknown). When a backend refuses a
            prompt as too long for its context, a routed request falls back to the next candidate
            whose declared window is larger.
    """

    base_url: str
    model: str = ""
    api_key_env: str = ""
    timeout_s: float = 120.0
    connect_timeout_s: float = 3.0
    max_concurrency: int = 64
    prices: PriceConfig | None = None
    context_window: int = 0

    def __post_init__(self):
        if not re.match(r"^https?://[^/\s]+", self.base_url or ""):
            raise ConfigError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            raise ConfigError(f"base_url must end in /v1 (the OpenAI-compatible API root), got {self.base_url!r}")
        if self.api_key_env and not _ENV_NAME.match(self.api_key_env):
            raise ConfigError(f"api_key_env must be an environment variable name, got {self.api_key_env!r}")
        _positive("timeout_s", self.timeout_s)
        _positive("connect_timeout_s", self.connect_timeout_s)
        _at_least_one("max_concurrency", self.max_concurrency)
        if self.context_window < 0:
            raise ConfigError(f"context_window must be >= 0 (0 = unknown), got {self.context_window}")

    def api_key(self) -> str | None:
        """The key from ``api_key_env`` (None when unset or empty)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


@dataclass
class ProfileConfig:
    """Named routing options a request selects with ``{"routerzoo": {"profile": NAME}}``.

    Give ``cost_weight`` (λ-argmax), or ``strong`` + ``weak`` (+ ``threshold``) for the two-model
    threshold policy; an empty profile means the router's own default policy.

    Attributes:
        cost_weight: λ >= 0, quality per USD.
        threshold: send to ``strong`` where q̂_strong − q̂_weak >= threshold (with strong / weak).
        strong: the strong model of the threshold policy.
        weak: the weak model of the threshold policy.
    """

    cost_weight: float | None = None
    threshold: float | None = None
    strong: str | None = None
    weak: str | None = None

    def __post_init__(self):
        if self.cost_weight is not None:
            _non_negative("cost_weight", self.cost_weight)
        if (self.strong is None) != (self.weak is None):
            raise ConfigError("give both strong and weak, or neither")
        if self.threshold is not None and self.strong is None:
            raise ConfigError("threshold needs strong and weak")
        if self.cost_weight is not None and self.strong is not None:
            raise ConfigError("give cost_weight or strong/weak/threshold, not both")


@dataclass
class BatchConfig:
    """Micro-batching of router inference across concurrent requests.

    Attributes:
        max_wait_ms: longest a prompt waits for others to join its batch, milliseconds (0: no
            waiting, only the prompts that queued up while the previous batch ran are batched).
        max_batch: most prompts encoded in one batch.
    """

    max_wait_ms: float = 2.0
    max_batch: int = 64

    def __post_init__(self):
        _non_negative("max_wait_ms", self.max_wait_ms)
        _at_least_one("max_batch", self.max_batch)


@dataclass
class LimitsConfig:
    """Admission limits.

    Attributes:
        max_in_flight: most requests handled at once (counted once their body has been read, so
            slow uploads cannot crowd out others); more are refused with 429.
        max_body_bytes: largest request body accepted; larger ones are refused with 413.
        body_timeout_s: longest time to receive a request's body, seconds; slower uploads get 408.
        deadline_s: longest a request may take from its body being read to its last byte, fallbacks,
            retries and streaming included, seconds; then it ends (504 before the answer started,
            an error event in a stream). Each attempt is further bounded by its backend's ``timeout_s``.
        max_answer_bytes: largest answer (or single stream event) read from a backend; a larger one
            is a failed attempt.
    """

    max_in_flight: int = 512
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout_s: float = 30.0
    deadline_s: float = 600.0
    max_answer_bytes: int = 32 * 1024 * 1024

    def __post_init__(self):
        _at_least_one("max_in_flight", self.max_in_flight)
        _at_least_one("max_body_bytes", self.max_body_bytes)
        _positive("body_timeout_s", self.body_timeout_s)
        _positive("deadline_s", self.deadline_s)
        _at_least_one("max_answer_bytes", self.max_answer_bytes)


@dataclass
class RetryConfig:
    """Retries of one backend before falling back to the next model.

    Retried: connection errors, timeouts, 429 and 5xx answers, garbage bodies, all only before the
    first byte of the answer has gone to the client.

    Attributes:
        max_retries: retries per backend after the first attempt (0: fall back at once).
        backoff_s: first backoff, seconds; doubled on each retry, with ±25% jitter.
        backoff_max_s: longest backoff, seconds.
        retry_after_max_s: cap on a backend's ``Retry-After``, seconds; a longer one falls back
            to the next model instead of waiting.
        fallback: try the next model in the router's order for the request when a backend fails.
    """

    max_retries: int = 2
    backoff_s: float = 0.05
    backoff_max_s: float = 1.0
    retry_after_max_s: float = 2.0
    fallback: bool = True

    def __post_init__(self):
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        _non_negative("backoff_s", self.backoff_s)
        _non_negative("backoff_max_s", self.backoff_max_s)
        _non_negative("retry_after_max_s", self.retry_after_max_s)


@dataclass
class CooldownConfig:
    """Taking a failing backend out of rotation.

    Attributes:
        failures: consecutive failed attempts after which a backend goes into cooldown.
        cooldown_s: how long it stays out, seconds; then it is probed (a one-token completion on
            the path that failed) and gets traffic again only when the probe is answered with a
            completion (else another cooldown). A 401 / 403 puts a backend in cooldown at once.
        probe_timeout_s: timeout of the probe, seconds.
    """

    failures: int = 3
    cooldown_s: float = 5.0
    probe_timeout_s: float = 2.0

    def __post_init__(self):
        _at_least_one("failures", self.failures)
        _positive("cooldown_s", self.cooldown_s)
        _positive("probe_timeout_s", self.probe_timeout_s)


@dataclass
class ReloadConfig:
    """Hot reload of a router served from ``models:/NAME@ALIAS``.

    Attributes:
        poll_interval_s: how often the registry is asked where the alias points, seconds; 0 = never.
    """

    poll_interval_s: float = 30.0

    def __post_init__(self):
        _non_negative("poll_interval_s", self.poll_interval_s)


@dataclass
class AuthConfig:
    """API keys clients must send as ``Authorization: Bearer KEY`` (no keys configured: open).

    Attributes:
        api_keys_env: name of an environment variable holding accepted keys, comma-separated.
        api_key_sha256: hex sha256 digests of accepted keys (so the file holds no secret).
        protect_metrics: ``/metrics`` needs a key too (``/health``, ``/health/backends`` and
            ``/ready`` stay open for probes).
    """

    api_keys_env: str = ""
    api_key_sha256: list[str] = field(default_factory=list)
    protect_metrics: bool = False

    def __post_init__(self):
        if self.api_keys_env and not _ENV_NAME.match(self.api_keys_env):
            raise ConfigError(f"api_keys_env must be an environment variable name, got {self.api_keys_env!r}")
        self.api_key_sha256 = [h.lower() for h in self.api_key_sha256]
        for h in self.api_key_sha256:
            if not _HEX64.match(h):
                raise ConfigError(f"api_key_sha256 entries must be 64 hex digits, got {h[:12]!r}…")

    def key_hashes(self) -> frozenset[bytes]:
        """sha256 digests of every accepted key (reads ``api_keys_env``); empty = no auth."""
        hashes = {bytes.fromhex(h) for h in self.api_key_sha256}
        if self.api_keys_env:
            raw = os.environ.get(self.api_keys_env, "")
            keys = [k.strip() for k in raw.split(",") if k.strip()]
            if not keys:
                raise ConfigError(f"auth.api_keys_env: environment variable {self.api_keys_env} is unset or empty")
            hashes |= {hashlib.sha256(k.encode()).digest() for k in keys}
        return frozenset(hashes)


@dataclass
class LoggingConfig:
    """What the server logs.

    Attributes:
        log_prompts: log each request's routing text and decision (off: prompts never reach logs).
        access_log: uvicorn's access log (method, path, status; never headers or bodies).
        level: log level of the routerzoo loggers (debug, info, warning, error).
    """

    log_prompts: bool = False
    access_log: bool = False
    level: str = "info"

    def __post_init__(self):
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"level must be debug, info, warning or error, got {self.level!r}")
        self.level = self.level.lower()


@dataclass
class ServeConfig:
    """Everything ``routerzoo serve`` needs besides the router itself.

    Attributes:
        router: the router to serve: an artifact directory or ``models:/NAME@ALIAS`` (the ROUTER
            argument of ``routerzoo serve`` overrides it).
        name: the model name the router is served under (``model`` in requests; listed by
            ``/v1/models`` together with the backends' names).
        backends: candidate model name → its backend.
        restrict_to_backends: route only among candidates that have a backend (else a candidate
            without one stops start-up).
        profiles: named routing options requests can select.
        routing_input: what the router reads: ``last_user`` (the last user turn) or
            ``conversation`` (every turn, ``role: content`` per line).
        prices: price table file (YAML/JSON, model → {input, output} USD per 1M tokens) for
            decisions and cost estimates; empty = the router's training prices.
        tracking_uri: MLflow tracking URI for ``models:/`` routers (default ``$MLFLOW_TRACKING_URI``).
        host: interface to bind.
        port: TCP port to bind.
        threads: torch intra-op threads for the router's encoder (0 = torch's default, one per
            core). 1 is the server default: micro-batches already amortise the encoder, and on a busy
            machine more threads contend (one prompt: 50 ms with 1 thread, 940 ms with 2 on a
            loaded 2-core VM).
        graceful_shutdown_s: on SIGTERM / Ctrl-C, longest wait for in-flight requests, seconds.
        batch: micro-batching.
        limits: in-flight cap and body size limit.
        retry: retries, backoff and fallback.
        cooldown: taking failing backends out of rotation.
        reload: hot reload from the registry.
        auth: client API keys.
        logging: what gets logged.
        mode: ``route`` (the router picks one model per request) or ``cascade`` (the ``cascade``
            section's chain is called in order until its deferral scorer accepts; no router needed).
        cascade: the cascade served in ``cascade`` mode (docs/serving.md, "Cascade mode").
        feedback: ``POST /v1/feedback`` for a router that learns online (``linucb``); None: off.
        log: the request log and feedback store (docs/request-log.md); None: off.
        shadow: a challenger router (``models:/NAME@ALIAS`` or a directory) whose decision on every
            routed request is computed off the hot path and logged; empty: none.
        canary: a challenger that routes a stable hash-chosen share of requests; None: none.
    """

    router: str = ""
    name: str = "routerzoo"
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    restrict_to_backends: bool = False
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    routing_input: str = "last_user"
    prices: str = ""
    tracking_uri: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 1
    graceful_shutdown_s: float = 30.0
    batch: BatchConfig = field(default_factory=BatchConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    mode: str = "route"
    cascade: CascadeServeConfig | None = None
    feedback: FeedbackConfig | None = None
    log: RequestLogConfig | None = None
    shadow: str = ""
    canary: CanaryConfig | None = None

    def __post_init__(self):
        if not self.name or not self.name.strip():
            raise ConfigError("name must be a non-empty string")
        if self.name in self.backends:
            raise ConfigError(f"name {self.name!r} is also a backend's name; the served name must differ")
        if self.routing_input not in ROUTING_INPUTS:
            raise ConfigError(f"routing_input must be one of {list(ROUTING_INPUTS)}, got {self.routing_input!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        _non_negative("graceful_shutdown_s", self.graceful_shutdown_s)
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = one per core), got {self.threads}")
        if self.mode not in SERVE_MODES:
            raise ConfigError(f"mode must be one of {list(SERVE_MODES)}, got {self.mode!r}")
        if self.mode == "cascade":
            if self.cascade is None:
                raise ConfigError("mode: cascade needs a cascade section with its chain, thresholds and scorer")
            missing = [m for m in self.cascade.chain if m not in self.backends]
            if missing:
                raise ConfigError(f"cascade.chain: model(s) {missing} have no backend; backends: {sorted(self.backends)}")

    def check_router(self, models: list[str]) -> list[str]:
        """The candidates requests may be routed to; errors for a config that does not fit the router.

        Args:
            models: the router's candidate models.

        Returns:
            the routable candidates (all of them, or those with a backend under
            ``restrict_to_backends``), in the router's order.

        Raises:
            ConfigError: candidates without a backend (listing them), no routable candidate, or a
                profile naming a model that is not routable.
        """
        missing = [m for m in models if m not in self.backends]
        if missing and not self.restrict_to_backends:
            raise ConfigError(
                f"no backend for candidate model(s) {missing} of the router (candidates: {models}); "
                "add --backend MODEL=BASE_URL for each, or set restrict_to_backends: true in the config "
                "to route only among candidates that have one"
            )
        routable = [m for m in models if m in self.backends]
        if not routable:
            raise ConfigError(f"none of the router's candidates {models} has a backend")
        for pname, p in self.profiles.items():
            for role in ("strong", "weak"):
                model = getattr(p, role)
                if model is not None and model not in routable:
                    raise ConfigError(f"profiles[{pname!r}].{role}: {model!r} is not a routable candidate ({routable})")
        return routable


def parse_backend_flag(text: str) -> tuple[str, str, str]:
    """``MODEL=BASE_URL[#BACKEND_MODEL_ID]`` from ``--backend`` as (model, base_url, backend model id or "")."""
    model, sep, rest = text.partition("=")
    url, _, backend_id = rest.partition("#")
    if not sep or not model.strip() or not url.strip():
        raise ConfigError(f"--backend {text!r}: expected MODEL=BASE_URL[#BACKEND_MODEL_ID], e.g. "
                          "big=http://127.0.0.1:8001/v1#Qwen/Qwen2.5-7B-Instruct")
    return model.strip(), url.strip(), backend_id.strip()


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> ServeConfig:
    """A :class:`ServeConfig` from a YAML file (or none), with ``overrides`` applied on top.

    Args:
        path: YAML file; None for the defaults.
        overrides: top-level keys replacing the file's (``backends`` entries are merged per model).

    Raises:
        ConfigError: unreadable YAML, or a bad key / value (the message names the file and key).
    """
    import yaml

    from routerzoo.routers.core.typed_config import ConfigFieldError, config_from_dict

    data: dict = {}
    where = "serve config"
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"--config {p}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        if key == "backends" and isinstance(data.get("backends"), dict):
            merged = dict(data["backends"])
            for model, entry in value.items():
                base = merged.get(model) if isinstance(merged.get(model), dict) else {}
                merged[model] = {**base, **entry}
            data["backends"] = merged
        else:
            data[key] = value
    try:
        return config_from_dict(ServeConfig, data, where)
    except ConfigFieldError as exc:
        raise ConfigError(str(exc)) from None
