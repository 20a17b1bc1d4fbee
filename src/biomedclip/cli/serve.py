"""``biomedclip serve``: the HTTP service (embeddings, classify, search, explain) + browser app."""

from __future__ import annotations

import argparse
import os

from biomedclip.cli.common import add_model_args

SERVE_MAX_PIXELS = 4096 * 4096  # = serve.config.SERVE_MAX_PIXELS (no FastAPI import at start-up)

HELP = "run the HTTP service and browser app (OpenAI-style embeddings, classify, search, explain)"
DESCRIPTION = """\
Serve one model over HTTP (FastAPI + uvicorn; install with pip install 'biomedclip[serve]').
Concurrent requests are grouped into one forward pass per modality (dynamic batching); when the
queue is full (or too many requests are in flight) the service answers 429 with Retry-After
instead of growing without bound; inputs are bounded before they are decoded (docs/serve.md).

routes:
  POST /v1/embeddings  OpenAI-shaped: {"input": [...], "modality": "text"|"image"}
  POST /v1/classify    zero-shot: {"image": DATA_URI, "labels": [...]}
  POST /v1/search      {"text"|"image"|"embedding"|"item": ..., "top_k": 10} (needs --index)
  POST /v1/explain     {"image": DATA_URI, "text": "..."} -> heatmap PNG + grid
  GET  /v1/models, /health/live, /health/ready, /metrics, /openapi.json, / (browser app)

Research use only: the model card places clinical deployment out of scope.

examples:
  biomedclip serve --model hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224
  biomedclip serve --model ./ckpt --index ./my-index --port 8080 --api-key "$KEY"
  biomedclip serve --model ./ckpt --max-pixels 25000000 --request-timeout 60
  biomedclip serve --model ./ckpt --index ./my-index --engine ray --replicas 4
  biomedclip serve --model ./ckpt --max-batch-size 64 --max-wait-ms 10 --allow-files /data/images
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", default=None, help="an index directory for /v1/search")
    p.add_argument(
        "--slides",
        default=None,
        metavar="DIR",
        help="slide feature folder (DIR/h5_files/<slide_id>.h5, `biomedclip slide features`): "
        "adds the Slides page (heatmap for a typed prompt, top patches)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one process (uvicorn); ray: Ray Serve replicas behind Ray's HTTP proxy, "
        "a local Ray or the cluster in $RAY_ADDRESS (needs the ray extra; default: local)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="Ray Serve replicas, each with its own model, batchers and limits (--engine ray)",
    )
    g = p.add_argument_group(
        "batching and limits",
        "every limit, its default and the status a client sees: docs/serve.md",
    )
    g.add_argument(
        "--max-batch-size",
        "--batch-size",
        dest="max_batch_size",
        type=int,
        default=32,
        help="most rows (texts or images) per forward pass (default: %(default)s)",
    )
    g.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill (ms)"
    )
    g.add_argument("--max-queue", type=int, default=512, help="queued rows per modality (then 429)")
    g.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="whole-request deadline: body, decode, queue, compute (then 429, or 408 for a slow "
        "upload; default: %(default)s)",
    )
    g.add_argument(
        "--payload-limit",
        type=int,
        default=32 * 2**20,
        metavar="BYTES",
        help="request body limit (then 413; default: %(default)s)",
    )
    g.add_argument(
        "--max-client-batch-size",
        type=int,
        default=128,
        help="inputs per /v1/embeddings request (then 413; default: %(default)s)",
    )
    g.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=64,
        help="/v1 requests in flight (then 429 + Retry-After; default: %(default)s)",
    )
    g.add_argument(
        "--max-concurrent-decodes",
        type=int,
        default=2,
        help="images decoded at once (the rest wait; default: %(default)s)",
    )
    g.add_argument(
        "--max-pixels",
        type=int,
        default=SERVE_MAX_PIXELS,
        help="decoded pixels (or voxels) per image; bounds inflation too (then 413; default: "
        "%(default)s = 4096^2)",
    )
    g.add_argument(
        "--max-labels", type=int, default=64, help="labels per classify request (then 413)"
    )
    g.add_argument(
        "--max-prompts",
        type=int,
        default=256,
        help="labels x templates per classify request (then 413; default: %(default)s)",
    )
    g.add_argument(
        "--allow-files",
        action="append",
        default=[],
        metavar="DIR",
        help="let requests name local image files under DIR (file:///... or a path)",
    )
    s = p.add_argument_group("security")
    s.add_argument(
        "--api-key",
        default=os.environ.get("BIOMEDCLIP_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 routes and /metrics (only that header; "
        "default: $BIOMEDCLIP_API_KEY)",
    )
    s.add_argument("--cors", action="append", default=[], metavar="ORIGIN", help="CORS origin")
    p.add_argument("--log-level", default="info", help="uvicorn log level (default: info)")
    add_model_args(p, speed=("precision", "backend"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from biomedclip.serve.app import serve
    from biomedclip.serve.config import ServeSettings

    settings = ServeSettings(
        model=args.model,
        device=args.device,
        precision=getattr(args, "precision", None) or getattr(args, "dtype", "fp32"),
        backend=getattr(args, "backend", "torch"),
        calibration=getattr(args, "calibration", None),
        cache_dir=args.cache_dir,
        index=args.index,
        slides=args.slides,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        request_timeout_s=args.request_timeout,
        max_body_bytes=args.payload_limit,
        max_pixels=args.max_pixels,
        max_inputs=args.max_client_batch_size,
        max_labels=args.max_labels,
        max_prompts=args.max_prompts,
        max_concurrent_requests=args.max_concurrent_requests,
        max_concurrent_decodes=args.max_concurrent_decodes,
        allow_files=list(args.allow_files),
        api_key=args.api_key or None,
        cors_origins=list(args.cors),
    )
    if args.engine == "ray":
        from biomedclip.serve.app import configure_logging
        from biomedclip.serve.ray_app import serve_ray

        configure_logging(args.log_level)
        return serve_ray(settings, args.replicas, host=args.host, port=args.port)
    if args.replicas != 1:
        from biomedclip.errors import ConfigError

        raise ConfigError("--replicas needs --engine ray (the local engine is one process)")
    return serve(settings, host=args.host, port=args.port, log_level=args.log_level)
