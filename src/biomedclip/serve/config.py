"""Typed settings of the HTTP service (``biomedclip serve`` flags map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from biomedclip.config import DEFAULT_MODEL
from biomedclip.errors import ConfigError

# One replica decodes at most ``max_concurrent_decodes`` images at a time, each at most this many
# pixels (4096 x 4096: a large radiograph or a mammogram downsampled by the modality). A decode
# holds ~24 bytes per pixel at its peak (inflated container + samples + float windowing), so two
# decode slots bound decoded pixels in flight to ~0.8 GiB. The CLI readers keep their own, larger
# default (imaging.DEFAULT_MAX_PIXELS) for local files.
SERVE_MAX_PIXELS = 4096 * 4096
ENGINES = ("local", "ray")


@dataclass
class ServeSettings:
    """What the service loads, how it batches, and what it accepts (docs/serve.md: "Limits").

    max_batch_size / max_wait_ms: a forward pass starts when this many rows are queued or the
        oldest has waited this long. max_queue: rows waiting per modality before requests are
        refused with 429 + Retry-After. request_timeout_s: the whole request (body, decode,
        queue, compute, response) must finish within it, else 429 + Retry-After (408 when the
        client has not finished sending its body).
    max_body_bytes (--payload-limit, 413), max_pixels (413), max_inputs
        (--max-client-batch-size, 413), max_labels / max_prompts (labels x templates) /
        max_template_chars / max_text_chars (413): per-request limits.
    max_concurrent_requests (429) and max_concurrent_decodes bound work across requests.
    allow_files: directories whose files requests may name (``file://`` URLs or paths).
    api_key: when set, /v1 routes and /metrics need ``Authorization: Bearer KEY``.
    """

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "torch"
    calibration: str | None = None  # --calibration: OpenVINO int8 / auto's first build
    cache_dir: str | None = None
    index: str | None = None
    slides: str | None = None  # feature folder for the Slides page (serve/slides.py)
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512
    request_timeout_s: float = 30.0
    max_body_bytes: int = 32 * 2**20
    max_pixels: int = SERVE_MAX_PIXELS
    max_inputs: int = 128
    max_labels: int = 64
    max_prompts: int = 256
    max_template_chars: int = 300
    max_text_chars: int = 20_000
    max_top_k: int = 100
    max_concurrent_requests: int = 64
    max_concurrent_decodes: int = 2
    allow_files: list[str] = field(default_factory=list)
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    warmup: bool = True

    def __post_init__(self) -> None:
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue": self.max_queue,
            "max_body_bytes": self.max_body_bytes,
            "max_pixels": self.max_pixels,
            "max_inputs": self.max_inputs,
            "max_labels": self.max_labels,
            "max_prompts": self.max_prompts,
            "max_template_chars": self.max_template_chars,
            "max_text_chars": self.max_text_chars,
            "max_top_k": self.max_top_k,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_concurrent_decodes": self.max_concurrent_decodes,
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
