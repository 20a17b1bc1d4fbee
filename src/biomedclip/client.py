"""Python client of ``biomedclip serve`` (httpx), with the service's methods.

::

    from biomedclip.client import Client
    with Client("http://127.0.0.1:8000", api_key=None) as c:
        vectors = c.embed_texts(["chest X-ray", "brain MRI"])      # np.float32 [2, 512]
        probs = c.classify("xray.png", ["pleural effusion", "normal chest x-ray"])
        hits = c.search(text="lung adenocarcinoma", top_k=5)
        ex = c.explain("xray.png", "left pleural effusion")      # ex["grid"], ex["png_bytes"]

Images may be paths, bytes or PIL images; they travel as base64 data URIs. Errors raise
:class:`APIError` with the service's status, code and message; 503 answers (busy, loading) are
retried after their ``Retry-After`` (429: overloaded, 503: not ready yet) up to ``retries`` times.
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import BiomedCLIPError

ImageLike = str | os.PathLike | bytes | Any  # Any: a PIL image


class APIError(BiomedCLIPError):
    """An error answer of the service."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after
        super().__init__(f"HTTP {status} {code}: {message}")


def image_data_uri(image: ImageLike) -> str:
    """A ``data:`` URI of a path, raw bytes or a PIL image (PNG)."""
    if isinstance(image, str) and image[:8].lower().startswith(("data:", "file://")):
        return image
    if isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


class Client:
    """A connection to one service; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
    ):
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise BiomedCLIPError("the client needs httpx: pip install 'biomedclip[serve]'") from e

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- transport -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, json: Any = None):
        for attempt in range(self.retries + 1):
            r = self._http.request(method, path, json=json)
            if r.status_code < 400:
                return r
            try:
                err = r.json().get("error", {})
            except ValueError:
                err = {}
            retry = r.headers.get("Retry-After")
            e = APIError(
                r.status_code,
                err.get("code", f"http_{r.status_code}"),
                err.get("message", r.text[:500]),
                float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
            )
            if r.status_code not in (429, 503) or attempt == self.retries:
                raise e
            time.sleep(min(e.retry_after or 1.0, 30.0))
        raise AssertionError("unreachable")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, {k: v for k, v in body.items() if v is not None}).json()

    # ---- API ---------------------------------------------------------------------------------------
    def embeddings(
        self, input: str | list[str], modality: str | None = None, encoding_format: str = "float"
    ) -> dict[str, Any]:
        """The raw OpenAI-shaped answer of ``POST /v1/embeddings`` (texts and data-URI images
        may be mixed when ``modality`` is None)."""
        body = {"input": input, "modality": modality, "encoding_format": encoding_format}
        return self._post("/v1/embeddings", body)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit text embeddings ``[n, D]`` (float32, sent as base64)."""
        return _vectors(self.embeddings(list(texts), "text", "base64"))

    def embed_images(self, images: list[ImageLike]) -> np.ndarray:
        """Unit image embeddings ``[n, D]``."""
        refs = [image_data_uri(im) for im in images]
        return _vectors(self.embeddings(refs, "image", "base64"))

    def classify(
        self,
        image: ImageLike,
        labels: list[str],
        templates: str | list[str] | None = None,
        top_k: int | None = None,
    ) -> dict[str, float]:
        """``{label: probability}``, most probable first."""
        body = {"image": image_data_uri(image), "labels": list(labels), "templates": templates}
        res = self._post("/v1/classify", {**body, "top_k": top_k})
        return {p["label"]: p["probability"] for p in res["probabilities"]}

    def search(
        self,
        text: str | None = None,
        image: ImageLike | None = None,
        embedding: np.ndarray | list[float] | None = None,
        item: int | None = None,
        top_k: int = 10,
        modality: str | None = None,
    ) -> list[dict[str, Any]]:
        """Hits (rank, id, score, row, modality, path, caption) for one query."""
        body = {
            "text": text,
            "image": None if image is None else image_data_uri(image),
            "embedding": None if embedding is None else np.asarray(embedding, float).tolist(),
            "item": item,
            "top_k": top_k,
            "modality": modality,
        }
        return self._post("/v1/search", body)["hits"]

    def explain(
        self, image: ImageLike, text: str, method: str = "patch-similarity", alpha: float = 0.45
    ) -> dict[str, Any]:
        """The answer of ``/v1/explain`` plus ``grid`` as an array and ``png_bytes``."""
        body = {"image": image_data_uri(image), "text": text, "method": method, "alpha": alpha}
        res = self._post("/v1/explain", body)
        res["grid"] = np.asarray(res["grid"], dtype=np.float32)
        res["png_bytes"] = base64.b64decode(res["png"].split(",", 1)[1])
        return res

    def models(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/models").json()["data"]

    def ready(self) -> bool:
        """True once the model is loaded and warm."""
        return self._http.get("/health/ready").status_code == 200

    def metrics(self) -> str:
        return self._request("GET", "/metrics").text


def _vectors(res: dict[str, Any]) -> np.ndarray:
    rows = sorted(res["data"], key=lambda d: d["index"])
    return np.stack(
        [
            np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
            if isinstance(d["embedding"], str)
            else np.asarray(d["embedding"], np.float32)
            for d in rows
        ]
    ).astype(np.float32)
