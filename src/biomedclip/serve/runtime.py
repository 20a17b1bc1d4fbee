"""The loaded model behind the service: encoder, batchers, classifier cache, searcher, explainer.

Everything that runs the model goes through the single encoding engine
(:class:`biomedclip.embedding.Encoder`): the batchers call ``encode_tokens`` / ``encode_pixels``,
zero-shot weights come from ``Encoder.classifier``. Forward passes are serialised by one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from biomedclip.errors import InputError
from biomedclip.serve.batching import DynamicBatcher
from biomedclip.serve.config import ServeSettings
from biomedclip.serve.inputs import ImageResolver
from biomedclip.serve.metrics import Metrics

log = logging.getLogger("biomedclip.serve")
CLASSIFIER_CACHE = 64


class Runtime:
    """Created at start-up; :meth:`load` (blocking, in a thread) makes it ready."""

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.compute_lock = threading.Lock()
        self.resolver = ImageResolver(settings.allow_files, settings.max_pixels)
        self.ready = False
        self.error: str | None = None
        self.model = self.encoder = self.tokenizer = self.preprocess = None
        self.text = self.image = None
        self.searcher = self.explainer = None
        self.sha256: str | None = None
        self._classifiers: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ---- start-up / shut-down ------------------------------------------------------------------
    def load(self) -> None:
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - reported by /health/ready, the process stays up
            log.exception("model load failed")
            self.error = f"{type(e).__name__}: {e}"

    def _load(self) -> None:
        import biomedclip
        from biomedclip.embedding import Encoder, EncoderSettings
        from biomedclip.explain import Explainer

        s = self.settings
        start = time.perf_counter()
        model, preprocess, tokenizer = biomedclip.load(
            s.model, device=s.device, cache_dir=s.cache_dir
        )
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.encoder = Encoder(
            model, settings=EncoderSettings(precision=s.precision, backend=s.backend)
        )
        info = getattr(model, "load_info", None)
        self.sha256 = getattr(info, "sha256", None)
        if s.index:
            from biomedclip.index import Searcher, VectorIndex

            self.searcher = Searcher(self.encoder, VectorIndex.open(s.index))
        self.explainer = Explainer(model, preprocess, tokenizer)
        common = dict(
            max_batch_size=s.max_batch_size,
            max_wait_s=s.max_wait_ms / 1000,
            max_queue=s.max_queue,
            compute_lock=self.compute_lock,
            stats=self.metrics,
        )
        self.text = DynamicBatcher("text", self._run_text, **common)
        self.image = DynamicBatcher("image", self._run_image, **common)
        if s.warmup:
            size = model.config.preprocess.image_size
            self._run_text([[tokenizer.cls_id, tokenizer.sep_id]])
            self._run_image([torch.zeros(3, size, size)])
        seconds = time.perf_counter() - start
        self.metrics.model_load_seconds.set(seconds)
        self.metrics.ready.set(1)
        self.ready = True
        log.info("model %s loaded and warm in %.1f s", s.model, seconds)

    def stop(self) -> None:
        """Finish queued rows, then stop the batch workers."""
        for b in (self.text, self.image):
            if b is not None:
                b.stop()

    # ---- forward passes (batch worker threads) ----------------------------------------------
    def _run_text(self, rows: Sequence[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return self.encoder.encode_tokens(ids, mask).float().cpu().numpy()

    def _run_image(self, rows: Sequence[torch.Tensor]) -> np.ndarray:
        return self.encoder.encode_pixels(torch.stack(list(rows))).float().cpu().numpy()

    # ---- request helpers (called from request threads / the event loop) ---------------------
    @property
    def dim(self) -> int:
        return int(self.model.config.embed_dim)

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)

    def check_texts(self, texts: Sequence[str], name: str = "input") -> None:
        limit = self.settings.max_text_chars
        for i, t in enumerate(texts):
            if not t.strip():
                raise InputError(f"{name}[{i}]: the text is empty")
            if len(t) > limit:
                raise InputError(f"{name}[{i}]: {len(t)} characters exceeds the limit of {limit}")

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], int, list[int]]:
        """Token rows (truncated at the context length), the token count, truncated indices."""
        self.check_texts(texts)
        batch = self.tokenizer(list(texts), warn=False)
        rows = [batch.input_ids[i, :n].tolist() for i, n in enumerate(batch.lengths)]
        truncated = [i for i, t in enumerate(batch.truncated) if t]
        return rows, int(sum(batch.lengths)), truncated

    def pixels(self, refs: Sequence[str], name: str = "input") -> list[torch.Tensor]:
        """Decode and preprocess images; the first bad one raises an error naming it."""
        return [self.preprocess(self.resolver.image(r, f"{name}[{i}]")) for i, r in enumerate(refs)]

    def classifier(self, labels: tuple[str, ...], templates) -> torch.Tensor:
        """Zero-shot weights ``[C, D]`` (an LRU cache: the same label sets come back)."""
        key = (labels, templates if isinstance(templates, (str, type(None))) else tuple(templates))
        with self._cache_lock:
            if key in self._classifiers:
                self._classifiers.move_to_end(key)
                return self._classifiers[key]
        with self.compute_lock:
            weights = torch.as_tensor(self.encoder.classifier(list(labels), templates)).float()
        with self._cache_lock:
            self._classifiers[key] = weights
            while len(self._classifiers) > CLASSIFIER_CACHE:
                self._classifiers.popitem(last=False)
        return weights

    def explain(self, image_ref: str, text: str, method: str):
        self.check_texts([text], "text")
        image = self.resolver.image(image_ref, "image")
        with self.compute_lock:
            return self.explainer.explain(image, [text], [method])[0]
