"""``routerzoo serve``: run the OpenAI-compatible router server.

Start-up checks everything a user can get wrong before binding the port (config keys and values,
backends for every candidate, API keys in the environment, the router itself), so a mistake is one
``routerzoo: error: ...`` line and exit status 2, never a server that fails on its first request.
"""

from __future__ import annotations

import argparse
import logging
import sys

DESCRIPTION = """\
Serve a router behind an OpenAI-compatible API. Clients keep the official openai SDK and point its
base_url at this server; each request's model decides what happens:
  the served name (--name)   the router picks the candidate model and the request goes to its backend
  a backend's name           the request goes straight to that backend
Per-request routing options go in a top-level "routerzoo" object of the body (openai client:
extra_body={"routerzoo": {"cost_weight": 1e4}}; also "threshold", "strong", "weak", "profile").
Endpoints: POST /v1/chat/completions (stream: true relayed as SSE), POST /v1/completions,
GET /v1/models, /health (liveness), /ready (router loaded), /health/backends (503 when no backend
is healthy), /metrics (Prometheus)."""

EPILOG = """\
Every candidate model of the router needs a backend (--backend or the config's backends), unless the
config sets restrict_to_backends: true. The YAML config (see configs/serve/example.yaml and
docs/serving.md) also sets per-backend model ids, API key variables, timeouts, concurrency and
prices; profiles; micro-batching; limits; retries and cooldown; hot reload; client API keys; logging.
Flags override the config. Stop with Ctrl-C or SIGTERM: in-flight requests are drained first."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` on the CLI's subparsers."""
    p = subparsers.add_parser("serve", help="serve a router behind an OpenAI-compatible API",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("router", metavar="ROUTER", nargs="?",
                   help="router artifact directory or models:/NAME@ALIAS (hot-reloaded when the alias moves); "
                        "a sequential policy (calibrated cascade, MDP router) is served in mode: cascade; "
                        "default: the config's router")
    p.add_argument("--config", metavar="SERVE_YAML", help="serve config (YAML); flags override its values")
    p.add_argument("--backend", action="append", default=[], metavar="MODEL=BASE_URL[#ID]",
                   help="OpenAI-compatible base URL (ending in /v1) of candidate MODEL, optionally with the "
                        "backend's own model id after '#' (vLLM: big=http://h:8000/v1#Qwen/Qwen2.5-7B-Instruct); "
                        "repeat for each candidate (adds to / overrides the config's backends)")
    p.add_argument("--name", help="model name the router is served under (default: routerzoo)")
    p.add_argument("--host", help="interface to bind (default: 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port to bind (default: 8000)")
    p.add_argument("--prices", metavar="FILE",
                   help="price file (YAML/JSON, $ per 1M input/output tokens per model) for decisions and cost "
                        "estimates, instead of the router's training prices")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ routers (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--reload-interval", type=float, metavar="SECONDS",
                   help="how often to poll the registry for a moved alias (default: 30; 0 = never)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads for the router's encoder (default: 1, right for a server on a shared or "
                        "small machine; 0 = one per core)")
    p.add_argument("--deadline", type=float, metavar="SECONDS",
                   help="longest a request may take, fallbacks, retries and streaming included (default: 600)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default: info)")
    return p


def build_config(args):
    """The :class:`~routerzoo.serving.config.ServeConfig` from the config file and the flags."""
    from routerzoo.errors import ConfigError
    from routerzoo.serving.config import load_config, parse_backend_flag

    overrides: dict = {}
    if args.router:
        overrides["router"] = args.router
    backends: dict = {}
    for text in args.backend:
        model, url, backend_id = parse_backend_flag(text)
        backends[model] = {"base_url": url, **({"model": backend_id} if backend_id else {})}
    if backends:
        overrides["backends"] = backends
    for key, value in (("name", args.name), ("host", args.host), ("port", args.port), ("prices", args.prices),
                       ("tracking_uri", args.tracking_uri), ("threads", args.threads)):
        if value is not None:
            overrides[key] = value
    config = load_config(args.config, overrides)
    if config.router and config.mode != "cascade" and _is_policy(config.router, config):
        # a calibrated cascade or an MDP router: served in mode: cascade, its models from --backend/--config
        cascade = {"policy": config.router}
        if config.cascade is not None:
            cascade["top_logprobs"] = config.cascade.top_logprobs
        config = load_config(args.config, {**overrides, "router": "", "mode": "cascade", "cascade": cascade})
    if args.deadline is not None:
        from dataclasses import replace

        config.limits = replace(config.limits, deadline_s=args.deadline)  # validated by __post_init__
    check_host(config.host, "--host" if args.host is not None else "host")
    if args.reload_interval is not None:
        from routerzoo.serving.config import ReloadConfig

        config.reload = ReloadConfig(poll_interval_s=args.reload_interval)
    if args.log_level:
        config.logging.level = args.log_level
    if not config.router and config.mode != "cascade":  # a cascade needs no router
        raise ConfigError("no router to serve: give ROUTER (a directory or models:/NAME@ALIAS) or router: in --config")
    return config


def _is_policy(source: str, config) -> bool:
    """Whether ``source`` is a sequential policy artifact, read cheaply (config.json or the registry's tag)."""
    from routerzoo.routers.core.loader import source_role

    return source_role(source, tracking_uri=config.tracking_uri or None) == "policy"


def check_host(host: str, flag: str) -> None:
    """An interface this machine can bind, or a ConfigError naming the flag (not uvicorn's traceback)."""
    import socket

    from routerzoo.errors import ConfigError

    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"{flag} {host!r}: not an address or host name this machine can bind "
                          f"({getattr(exc, 'strerror', None) or exc}); e.g. 127.0.0.1 or 0.0.0.0") from None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    """Check the config, load the router, serve until stopped."""
    config = build_config(args)
    hashes = config.auth.key_hashes()  # a key variable that is unset stops start-up here, not at the first request
    if not hashes and not _is_loopback(config.host):
        print(f"routerzoo: warning: serving on {config.host} without API keys: anyone who can reach this port can "
              "spend your backends' tokens (set auth.api_keys_env in --config)", file=sys.stderr, flush=True)
    logging.basicConfig(level=config.logging.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("routerzoo").setLevel(config.logging.level.upper())
    # httpx logs every upstream call at INFO: noise at production rates
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from routerzoo.extras import require

    require("fastapi", "the router server")
    require("uvicorn", "the router server")
    from routerzoo.serving.loader import load_for_serving

    loaded = load_for_serving(config.router, config) if config.router else None  # bad sources end here
    import uvicorn

    from routerzoo.serving.app import create_app

    app = create_app(config, router=loaded)
    if config.mode == "cascade":
        app.state.routerzoo.cascade.load()  # a bad scorer ends here, before the port is bound
        c = config.cascade
        what = f"the sequential policy {c.policy}" if c.policy else f"a cascade over {' -> '.join(c.chain)}"
    else:
        what = f"{loaded.label} (candidates: {', '.join(loaded.routable)})"
    print(f"routerzoo: serving {what} as {config.name!r} on http://{config.host}:{config.port}/v1",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.logging.level,
                access_log=config.logging.access_log, timeout_graceful_shutdown=config.graceful_shutdown_s or None,
                server_header=False)
    return 0
