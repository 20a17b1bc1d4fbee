"""Helpers of the PMC pipeline tests: a local HTTP mirror (Range, throttling, failure injection),
small pipeline configs, and access to the real data through the root conftest's ``shared_path``."""

from __future__ import annotations

import http.server
import importlib.util
import threading
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_biomedclip_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
shared_path = _root.shared_path


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves files under ``server.root`` with Range support.

    ``server.delay_s`` sleeps per chunk (slow downloads), ``server.fail`` maps a path to a list of
    status codes returned by its next requests, ``server.cut`` maps a path to a byte count after
    which the first response is cut off, and ``server.log`` records (path, Range header).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        path = self.path.split("?", 1)[0].lstrip("/")
        rng = self.headers.get("Range")
        with srv.lock:
            srv.log.append((path, rng))
            codes = srv.fail.get(path)
            code = codes.pop(0) if codes else None
        if code:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = srv.root / path
        if not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        start = 0
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with srv.lock:
            cut = srv.cut.pop(path, None)
        chunk = max(1, len(body) // 8)
        sent = 0
        try:
            for i in range(0, len(body), chunk):
                piece = body[i : i + chunk]
                if cut is not None and sent + len(piece) > cut:
                    self.wfile.write(piece[: cut - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(piece)
                sent += len(piece)
                if srv.delay_s:
                    self.wfile.flush()
                    time.sleep(srv.delay_s)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Mirror:
    def __init__(self, root: Path):
        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
        self.httpd.daemon_threads = True
        self.httpd.root = root
        self.httpd.lock = threading.Lock()
        self.httpd.log = []
        self.httpd.fail = {}
        self.httpd.cut = {}
        self.httpd.delay_s = 0.0
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_mirror(root: Path) -> Mirror:
    return Mirror(root)


def small_config(out: Path, tokenizer_dir: Path, **kw):
    """A BuildConfig for tests: fast retries, small shards."""
    from biomedclip.pmc.config import BuildConfig, FetchConfig, PairConfig, SplitConfig, WriteConfig

    return BuildConfig(
        out=out,
        fetch=FetchConfig(
            mirror=kw.pop("mirror", "http://127.0.0.1:1/"), retries=2, backoff_s=0.01, timeout_s=10
        ),
        pair=PairConfig(tokenizer_dir=str(tokenizer_dir), max_side=kw.pop("max_side", 512)),
        split=SplitConfig(fractions=kw.pop("fractions", (0.6, 0.2, 0.2))),
        write=WriteConfig(shard_samples=kw.pop("shard_samples", 4)),
        workers=kw.pop("workers", 1),
        **kw,
    )


def shard_bytes(out: Path) -> dict[str, bytes]:
    """Every shard and the sizes/manifest files of a build, by name."""
    d = Path(out) / "shards"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}
