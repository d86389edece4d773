"""Prometheus metrics of one server, in a registry of its own (two apps in one process never mix).

Labels are bounded: endpoints, HTTP status codes, candidate model names and error reasons; never
prompts, keys or request ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# routing: micro-batch wait + encode; upstream: from request sent to full answer / first event
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """Every metric the server exports.

    Attributes:
        registry: the app's own CollectorRegistry (what ``/metrics`` renders).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("routerzoo_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.decisions = Counter("routerzoo_decisions", "Routing decisions, by chosen model", ["model"], registry=r)
        self.routing_latency = Histogram("routerzoo_routing_latency_seconds",
                                         "Time to a routing decision (batch wait + router inference)",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_latency = Histogram("routerzoo_upstream_latency_seconds",
                                          "Upstream time per successful attempt (full answer, or first event when streaming)",
                                          ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("routerzoo_batch_size", "Prompts per router inference batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.tokens = Counter("routerzoo_tokens", "Tokens reported by backends' usage, by model and kind",
                              ["model", "kind"], registry=r)
        self.cost = Counter("routerzoo_estimated_cost_usd", "Estimated USD cost from usage and the price table",
                            ["model"], registry=r)
        self.upstream_errors = Counter("routerzoo_upstream_errors", "Failed upstream attempts, by model and reason",
                                       ["model", "reason"], registry=r)
        self.retries = Counter("routerzoo_retries", "Upstream retries (same backend), by model", ["model"], registry=r)
        self.fallbacks = Counter("routerzoo_fallbacks", "Requests moved to the next model after a backend failed",
                                 ["from_model", "to_model"], registry=r)
        self.cooldown = Gauge("routerzoo_backends_in_cooldown", "Backends out of rotation (cooling down or probing)",
                              registry=r)
        self.in_flight = Gauge("routerzoo_in_flight_requests", "Requests being handled", registry=r)
        self.reloads = Counter("routerzoo_router_reloads", "Hot reloads of the router, by outcome", ["outcome"], registry=r)
        self.router = Info("routerzoo_router", "The router being served", registry=r)

    def set_router(self, name: str, kind: str, version: str) -> None:
        """Record which router serves (shown as ``routerzoo_router_info{name, kind, version}``; never a
        file path: /metrics may be scraped by more people than may read the host's file system)."""
        self.router.info({"name": name, "kind": kind, "version": version})


def record_usage(metrics, usage, model: str, price: tuple[float, float] | None) -> float | None:
    """Count one call's tokens (Prometheus and the request log) and its estimated cost.

    Args:
        metrics: the server's :class:`ServerMetrics`.
        usage: the backend's ``usage`` object (``prompt_tokens``, ``completion_tokens``), or anything.
        model: the candidate that answered.
        price: (input, output) USD per million tokens, or None when unknown.

    Returns:
        The USD cost, or None when the price or a token count is unknown.
    """
    from routerzoo.serving.request_log import note

    if not isinstance(usage, dict):
        return None
    pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
    ok = [isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in (pt, ct)]
    if ok[0]:
        metrics.tokens.labels(model, "prompt").inc(pt)
    if ok[1]:
        metrics.tokens.labels(model, "completion").inc(ct)
    note(input_tokens=pt if ok[0] else None, output_tokens=ct if ok[1] else None)
    if price is None or not all(ok):
        return None
    usd = (pt * price[0] + ct * price[1]) / 1_000_000.0
    metrics.cost.labels(model).inc(usd)
    note(cost=usd)
    return usd
