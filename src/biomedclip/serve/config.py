"""Typed settings of the HTTP service (``biomedclip serve`` flags map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from biomedclip.config import DEFAULT_MODEL
from biomedclip.errors import ConfigError
from biomedclip.imaging import DEFAULT_MAX_PIXELS


@dataclass
class ServeSettings:
    """What the service loads, how it batches, and what it accepts.

    max_batch_size / max_wait_ms: a forward pass starts when this many rows are queued or the
        oldest has waited this long. max_queue: rows waiting per modality before requests are
        refused with 503 + Retry-After. request_timeout_s: a request waiting longer gets 503.
    max_body_bytes / max_pixels / max_inputs / max_labels / max_text_chars: input limits.
    allow_files: directories whose files requests may name (``file://`` URLs or paths).
    api_key: when set, /v1 routes and /metrics need ``Authorization: Bearer KEY``.
    """

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "torch"
    cache_dir: str | None = None
    index: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512
    request_timeout_s: float = 30.0
    max_body_bytes: int = 32 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_inputs: int = 128
    max_labels: int = 64
    max_text_chars: int = 20_000
    max_top_k: int = 100
    allow_files: list[str] = field(default_factory=list)
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    warmup: bool = True

    def __post_init__(self) -> None:
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue": self.max_queue,
            "max_body_bytes": self.max_body_bytes,
            "max_inputs": self.max_inputs,
            "max_labels": self.max_labels,
            "max_text_chars": self.max_text_chars,
            "max_top_k": self.max_top_k,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"serve setting {name}={value}: must be >= 1")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ConfigError("max_wait_ms must be >= 0 and request_timeout_s > 0")
        if self.max_inputs > self.max_queue:
            raise ConfigError(
                f"max_inputs ({self.max_inputs}) > max_queue ({self.max_queue}): a single "
                "request could never be queued"
            )
