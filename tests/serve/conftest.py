"""A real uvicorn server on 127.0.0.1 (free port, background thread) over the tiny model + index."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import shared_path


def data_uri(path_or_bytes: Path | bytes, mime: str = "image/png") -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png_bytes(size=(48, 40), colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


class LiveServer:
    """``uvicorn.Server`` for an app on a socket bound to 127.0.0.1:0 (no port race)."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self, ready_timeout: float = 120) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server at {self.url} not ready after {ready_timeout} s")

    @property
    def runtime(self):
        return self.app.state.runtime

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def start_server(**settings) -> LiveServer:
    from biomedclip.serve import ServeSettings, create_app

    return LiveServer(create_app(ServeSettings(**settings))).start()


@pytest.fixture(scope="session")
def example_dir() -> Path:
    return shared_path("biomedclip_hub", "example_data", "biomed_image_classification_example_data")


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory, tiny_model_dir, example_dir) -> Path:
    """An index of the 9 model-card example images (captions = names) and 3 text rows."""
    import biomedclip
    from biomedclip.embedding import Encoder
    from biomedclip.index import build_index_from_arrays

    model, _, _ = biomedclip.load(str(tiny_model_dir))
    images = sorted(p for p in example_dir.iterdir() if p.is_file())
    texts = ["chest x ray", "brain mri", "lung adenocarcinoma histopathology"]
    enc = Encoder(model)
    img = enc.encode_images([str(p) for p in images])
    txt = enc.encode_texts(texts)
    assert not img.failures
    vectors = np.concatenate([img.embeddings, txt.embeddings])
    ids = [p.stem for p in images] + [f"text-{i}" for i in range(len(texts))]
    metadata = {
        "path": [str(p) for p in images] + [None] * len(texts),
        "text": [p.stem.replace("_", " ") for p in images] + texts,
        "modality": ["image"] * len(images) + ["text"] * len(texts),
    }
    out = tmp_path_factory.mktemp("serve_index") / "index"
    build_index_from_arrays(
        ids,
        vectors,
        out,
        model=model.load_info.source,
        model_sha256=model.load_info.sha256,
        metadata=metadata,
    )
    return out


@pytest.fixture(scope="session")
def local_server(tiny_model_dir, tiny_index, example_dir):
    """The single-process service (``server`` everywhere but tests/serve/test_ray.py)."""
    srv = start_server(
        model=str(tiny_model_dir),
        index=str(tiny_index),
        max_wait_ms=30,
        max_batch_size=64,
        allow_files=[str(example_dir)],
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def server(local_server):
    """The service under test: ``url`` and ``runtime`` (the in-process model and engine that
    expected values are computed with)."""
    return local_server


@pytest.fixture(scope="session")
def example_image(example_dir) -> Path:
    return example_dir / "chest_X-ray.jpg"
