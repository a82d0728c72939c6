"""Prometheus metrics of the control plane (its own registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "goat_serve_requests",
            "Chat completion requests by model and HTTP status",
            ["model", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "goat_serve_request_duration_seconds",
            "Request latency (queue + load + generation)",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.first_byte = Histogram(
            "goat_serve_first_byte_seconds",
            "Streaming: request received until the first chunk is sent",
            ["model"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.loads = Counter(
            "goat_serve_model_loads", "Worker starts by model and outcome", ["model", "outcome"], registry=r
        )
        self.load_seconds = Histogram(
            "goat_serve_model_load_seconds",
            "Worker start until the model answers",
            ["model"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.evictions = Counter(
            "goat_serve_evictions", "Idle workers evicted to fit another model", ["model"], registry=r
        )
        self.crashes = Counter(
            "goat_serve_worker_crashes", "Workers that died unexpectedly", ["model"], registry=r
        )
        self.rejected = Counter(
            "goat_serve_rejected",
            "Requests refused before reaching a worker",
            ["model", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "goat_serve_queue_depth", "Requests waiting for the model's worker", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "goat_serve_in_flight", "Requests holding the model's worker", ["model"], registry=r
        )
        self.rss_mb = Gauge(
            "goat_serve_worker_rss_mb", "Resident memory of the model's worker", ["model"], registry=r
        )
        self.used_mb = Gauge("goat_serve_memory_used_mb", "Memory charged to loaded workers", registry=r)
        self.budget_mb = Gauge("goat_serve_memory_budget_mb", "The memory budget (--budget-mb)", registry=r)
        self.margin_mb = Gauge("goat_serve_memory_margin_mb", "Head-room kept free (--margin-mb)", registry=r)
