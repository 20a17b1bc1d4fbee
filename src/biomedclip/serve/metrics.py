"""Prometheus metrics of one service (its own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from biomedclip.serve.batching import BatchStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS"})  # any other method is counted as "other"


class Metrics(BatchStats):
    """Request counts/latency per route, batch sizes, queue depth, rejections, model load time."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "biomedclip_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "biomedclip_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batches = Counter(
            "biomedclip_batches", "forward passes run by the batcher", ["modality"], registry=r
        )
        self.batch_rows = Counter(
            "biomedclip_batch_rows", "rows encoded by the batcher", ["modality"], registry=r
        )
        self.batch_size = Histogram(
            "biomedclip_batch_size",
            "rows per forward pass",
            ["modality"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "biomedclip_batch_seconds",
            "forward pass time",
            ["modality"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "biomedclip_queue_depth", "rows waiting for a forward pass", ["modality"], registry=r
        )
        self.rejected = Counter(
            "biomedclip_rejected",
            "requests refused (queue_full, overloaded, timeout, slow_client, payload_too_large)",
            ["reason"],
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "biomedclip_model_load_seconds", "time to load and warm the model", registry=r
        )
        self.ready = Gauge("biomedclip_ready", "1 once the model is loaded and warm", registry=r)
        for modality in ("text", "image"):
            self.batches.labels(modality)
            self.batch_rows.labels(modality)
            self.queue_depth.labels(modality).set(0)

    # ---- BatchStats --------------------------------------------------------------------------
    def batch(self, modality: str, rows: int, seconds: float) -> None:
        self.batches.labels(modality).inc()
        self.batch_rows.labels(modality).inc(rows)
        self.batch_size.labels(modality).observe(rows)
        self.batch_seconds.labels(modality).observe(seconds)

    def depth(self, modality: str, rows: int) -> None:
        self.queue_depth.labels(modality).set(rows)

    # ---- HTTP --------------------------------------------------------------------------------
    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
