"""A minimal Hugging Face hub endpoint on 127.0.0.1 serving one repository's files.

It answers ``HEAD``/``GET /{repo}/resolve/{revision}/{filename}`` with the headers huggingface_hub
reads (commit, etag, size), so the real download-and-cache code path runs without the internet.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, files: dict[str, Path]):
        self.repo_id, self.files, self.requests = repo_id, files, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _lookup(self):
                prefix = f"/{hub.repo_id}/resolve/"
                hub.requests.append((self.command, self.path))
                if not self.path.startswith(prefix):
                    return None
                _, _, name = self.path[len(prefix) :].partition("/")
                return hub.files.get(name.split("?")[0])

            def _headers(self, path: Path):
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return data

            def do_HEAD(self):  # noqa: N802
                path = self._lookup()
                if path is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(path)

            def do_GET(self):  # noqa: N802
                path = self._lookup()
                if path is None:
                    self.do_HEAD()
                    return
                self.wfile.write(self._headers(path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
