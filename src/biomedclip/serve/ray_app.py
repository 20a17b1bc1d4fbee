"""Scale-out on Ray Serve: the same FastAPI app (routes, limits, dynamic batching) per replica.

``biomedclip serve --engine ray --replicas N`` starts a local Ray instance (or joins the cluster
named by ``RAY_ADDRESS``) and runs N replicas behind Ray Serve's HTTP proxy on ``--host/--port``.
Each replica loads the model, owns its batchers and admission limits, and opens the index
memory-mapped read-only, so replicas on one node share its pages. For a cluster, deploy
``ray_serve.yaml`` (next to this file) with ``serve deploy`` / ``serve run``: its
``import_path`` is :func:`build_app`, whose ``args`` are :class:`ServeSettings` fields.

Ray Serve checks each replica's health with :meth:`BiomedCLIPReplica.check_health` (a dead batch
worker or a failed load restarts the replica). A request whose replica dies mid-flight gets an
error from the proxy (500/503); clients retry it (biomedclip.client retries 503) and the proxy
routes the retry to a live replica.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from biomedclip.serve.config import ServeSettings

log = logging.getLogger("biomedclip.serve")
APP_NAME = "biomedclip"


def _deployment():
    from ray import serve

    @serve.ingress()
    class BiomedCLIPReplica:
        """One replica: ``create_app`` with the model loaded before the replica takes traffic."""

        def __init__(self, settings: dict[str, Any]):
            self.settings = ServeSettings(**settings)
            self.served = None

        def __serve_build_asgi_app__(self):
            from biomedclip.serve.app import configure_logging, create_app

            configure_logging("warning")
            # Ray's proxy answers with X-Request-ID itself (and forwards the client's id)
            app = create_app(self.settings, load=False, echo_request_id=False)
            rt = app.state.runtime
            rt.load()  # blocking: Ray marks the replica ready only once it can answer
            if rt.error:
                raise RuntimeError(f"model load failed: {rt.error}")
            self.served = app
            return app

        def check_health(self) -> None:
            rt = self.served.state.runtime if self.served is not None else None
            if rt is not None and not rt.healthy:
                raise RuntimeError(rt.error or "a batch worker is not running")

    return serve.deployment(BiomedCLIPReplica, name="BiomedCLIPReplica")


def bind(settings: ServeSettings, replicas: int, cpus_per_replica: float = 1.0):
    """The Ray Serve application of ``settings`` with ``replicas`` replicas."""
    deployment = _deployment().options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        # our own admission (429 + Retry-After) answers before Ray's proxy-side back-pressure
        max_ongoing_requests=settings.max_concurrent_requests + 1,
        health_check_period_s=5,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=settings.request_timeout_s + 5,
    )
    return deployment.bind(dataclasses.asdict(settings))


def build_app(args: dict[str, Any]):
    """Application builder for ``ray_serve.yaml`` (``import_path``): ``args`` are ServeSettings
    fields plus ``replicas`` and ``cpus_per_replica``."""
    args = dict(args)
    replicas = int(args.pop("replicas", 1))
    cpus = float(args.pop("cpus_per_replica", 1.0))
    return bind(ServeSettings(**args), replicas, cpus)


def start(
    settings: ServeSettings,
    replicas: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    cpus_per_replica: float = 1.0,
) -> str:
    """Start Ray (local, or ``RAY_ADDRESS``) and run the application; returns its URL."""
    import ray
    from ray import serve

    settings = dataclasses.replace(settings)
    if settings.index:  # replicas share the index pages (memory-mapped, read-only)
        settings.index = os.path.abspath(settings.index)
    if not ray.is_initialized():
        cpus = None if os.environ.get("RAY_ADDRESS") else max(replicas * cpus_per_replica, 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port}, detached=False)
    serve.run(bind(settings, replicas, cpus_per_replica), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_ray(
    settings: ServeSettings, replicas: int, host: str = "127.0.0.1", port: int = 8000
) -> int:
    """Run until SIGINT/SIGTERM; returns the exit status (1 when the replicas cannot start)."""
    import signal
    import threading

    try:
        url = start(settings, replicas, host, port)
    except Exception as e:  # noqa: BLE001 - a replica that cannot load the model
        log.error("Ray Serve deployment failed: %s", e)
        stop()
        return 1
    log.warning("serving %s with %d Ray Serve replicas at %s", settings.model, replicas, url)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stop()
    return 0
