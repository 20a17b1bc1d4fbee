"""The loaded model behind the service: encoder, batchers, classifier cache, searcher, explainer.

Everything that runs the model goes through the single encoding engine
(:class:`biomedclip.embedding.Encoder`): the batchers call ``encode_tokens`` / ``encode_pixels``;
zero-shot prompts go through the text batcher too (so a classifier of many prompts is chunked
into passes of ``max_batch_size`` rows, under the request deadline) and the weights are cached.
Forward passes are serialised by one lock. Images are decoded in a pool of
``max_concurrent_decodes`` threads, which bounds the decoded pixels in flight.

The event-loop rule: a handler does only bounded bookkeeping on the event loop (limits checked
by arithmetic on sizes it was sent). Work that grows with the request (building prompts,
tokenising, decoding) runs in a worker pool (:meth:`Runtime.offload`, :meth:`Runtime.decode`),
awaited at most until the request's deadline, so one slow request never stalls other clients.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from biomedclip.errors import InputError
from biomedclip.prompts import build_prompts, check_prompts, resolve_templates
from biomedclip.serve.batching import DynamicBatcher, RequestTimeout
from biomedclip.serve.config import ServeSettings
from biomedclip.serve.inputs import ImageResolver
from biomedclip.serve.limits import PayloadTooLarge, remaining
from biomedclip.serve.metrics import Metrics

log = logging.getLogger("biomedclip.serve")
CLASSIFIER_CACHE = 64
REQUEST_WORKERS = 8  # threads for request-sized CPU work (prompts, tokenising)


class Runtime:
    """Created at start-up; :meth:`load` (blocking, in a thread) makes it ready.

    ``on_fatal`` (set by :func:`biomedclip.serve.app.serve`) is called when loading fails: the
    process then exits non-zero instead of answering 503 forever.
    """

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.compute_lock = threading.Lock()
        self.resolver = ImageResolver(settings.allow_files, settings.max_pixels)
        self.decoders = ThreadPoolExecutor(settings.max_concurrent_decodes, "decode")
        self.workers = ThreadPoolExecutor(REQUEST_WORKERS, "request")
        self.ready = False
        self.error: str | None = None
        self.on_fatal: Callable[[str], None] | None = None
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
        except Exception as e:  # noqa: BLE001 - /health/ready reports it; serve() exits non-zero
            log.exception("model load failed")
            self.error = f"{type(e).__name__}: {e}"
            if self.on_fatal is not None:
                self.on_fatal(self.error)

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
            model,
            settings=EncoderSettings(
                precision=s.precision, backend=s.backend, calibration=s.calibration
            ),
        )
        info = getattr(model, "load_info", None)
        self.sha256 = getattr(info, "sha256", None)
        if s.index:
            from biomedclip.index import Searcher, VectorIndex

            index = VectorIndex.open(s.index)
            index.metadata()  # a corrupt index fails the load (exit 1), not every search (500)
            self.searcher = Searcher(self.encoder, index)
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

    @property
    def healthy(self) -> bool:
        """Loaded, and both batch workers alive (what /health/ready reports)."""
        return (
            self.ready
            and self.text is not None
            and self.image is not None
            and self.text.alive
            and self.image.alive
        )

    def stop(self) -> None:
        """Finish queued rows, then stop the batch workers and the decoders."""
        for b in (self.text, self.image):
            if b is not None:
                b.stop()
        self.decoders.shutdown(wait=False, cancel_futures=True)
        self.workers.shutdown(wait=False, cancel_futures=True)

    # ---- forward passes (batch worker threads) ----------------------------------------------
    def _run_text(self, rows: Sequence[list[int]]) -> np.ndarray:
        ids, mask = self.tokenizer.pad(rows)
        return self.encoder.encode_tokens(ids, mask).float().cpu().numpy()

    def _run_image(self, rows: Sequence[torch.Tensor]) -> np.ndarray:
        return self.encoder.encode_pixels(torch.stack(list(rows))).float().cpu().numpy()

    # ---- request helpers (request threads / the event loop) ---------------------
    @property
    def dim(self) -> int:
        return int(self.model.config.embed_dim)

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)

    def check_texts(
        self,
        texts: Sequence[str],
        name: str = "input",
        limit: int | None = None,
        positions: Sequence[int] | None = None,
    ):
        """Empty texts are 400, too long ones 413; errors say ``name[position]``."""
        limit = limit or self.settings.max_text_chars
        for i, t in zip(positions or range(len(texts)), texts):
            if not t.strip():
                raise InputError(f"{name}[{i}]: the text is empty")
            if len(t) > limit:
                raise PayloadTooLarge(
                    f"{name}[{i}]: {len(t)} characters exceeds the limit of {limit}"
                )

    def tokenize(
        self, texts: Sequence[str], name: str = "input"
    ) -> tuple[list[list[int]], int, list[int]]:
        """Token rows (truncated at the context length), the token count, truncated indices."""
        self.check_texts(texts, name)
        batch = self.tokenizer(list(texts), warn=False)
        rows = [batch.input_ids[i, :n].tolist() for i, n in enumerate(batch.lengths)]
        truncated = [i for i, t in enumerate(batch.truncated) if t]
        return rows, int(sum(batch.lengths)), truncated

    def _pixels(self, ref: str | Path, name: str) -> torch.Tensor:
        return self.preprocess(self.resolver.image(ref, name))

    def remaining(self) -> float:
        """Seconds left before the current request's deadline."""
        return remaining(self.settings.request_timeout_s)

    async def _await(self, pool: ThreadPoolExecutor, what: str, fn, *args):
        fut = pool.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), self.remaining())
        except TimeoutError as e:  # the waiter leaves; a call already running ends in its slot
            raise RequestTimeout(f"{what} did not finish within the request timeout") from e

    async def offload(self, fn, *args):
        """Run request-sized CPU work (prompts, tokenising) in the request worker pool, awaited
        at most until the request's deadline: the event loop stays free for other clients."""
        return await self._await(self.workers, "the request's text work", fn, *args)

    async def decode(self, fn, *args):
        """Run a decode in the bounded decode pool, awaited at most until the request's deadline
        (a cancelled waiter leaves the pool's queue; a decode already running finishes)."""
        return await self._await(self.decoders, "the image decode", fn, *args)

    async def text_rows(self, texts: Sequence[str], name: str = "input"):
        """:meth:`tokenize` in the worker pool."""
        return await self.offload(self.tokenize, texts, name)

    async def pixels(self, refs: Sequence[str | Path], name: str = "input") -> list[torch.Tensor]:
        """Decode and preprocess images in the decode pool; the first bad one raises."""
        names = [f"{name}[{i}]" for i in range(len(refs))]
        tasks = [
            asyncio.ensure_future(self.decode(self._pixels, r, n)) for r, n in zip(refs, names)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            raise

    def check_prompts(self, labels: Sequence[str], templates) -> tuple[str, ...]:
        """The checked templates: count x labels (413), each template's length (413), the
        grammar (:func:`biomedclip.prompts.parse_template`: 422) and every prompt's length
        (413), all computed from sizes before any prompt is built (cheap: on the event loop)."""
        s = self.settings
        if isinstance(templates, list):
            if len(templates) * len(labels) > s.max_prompts:
                raise PayloadTooLarge(
                    f"{len(labels)} labels x {len(templates)} templates = "
                    f"{len(labels) * len(templates)} prompts: the limit is {s.max_prompts}"
                )
            self.check_texts(templates, "templates", s.max_template_chars)
        elif isinstance(templates, str) and len(templates) > s.max_template_chars:
            raise PayloadTooLarge(
                f"templates: {len(templates)} characters exceeds the limit of "
                f"{s.max_template_chars}"
            )
        temps = resolve_templates(templates)
        if len(temps) * len(labels) > s.max_prompts:
            raise PayloadTooLarge(
                f"{len(labels)} labels x {len(temps)} templates = {len(labels) * len(temps)} "
                f"prompts: the limit is {s.max_prompts}"
            )
        self.check_texts(temps, "templates", s.max_template_chars)
        check_prompts(labels, temps, s.max_text_chars)
        return temps

    def _prompt_rows(self, labels: Sequence[str], temps: tuple[str, ...]) -> list[list[int]]:
        """Build (label-major, as Encoder.classifier) and tokenise the prompts: worker pool."""
        prompts = build_prompts(labels, temps, self.settings.max_text_chars)
        return self.tokenize(prompts, "prompts")[0]

    async def classifier(self, labels: tuple[str, ...], templates) -> torch.Tensor:
        """Zero-shot weights ``[C, D]`` (as :meth:`Encoder.classifier`: per label the mean of its
        unit prompt embeddings, renormalised), the prompts built and tokenised in the worker pool
        and chunked through the text batcher; an LRU cache keeps the label sets that come back."""
        temps = self.check_prompts(labels, templates)
        key = (labels, temps)
        with self._cache_lock:
            if key in self._classifiers:
                self._classifiers.move_to_end(key)
                return self._classifiers[key]
        rows = await self.offload(self._prompt_rows, labels, temps)
        step = self.settings.max_batch_size  # chunks: never more than one pass in the queue
        parts = [
            await self.text.run(rows[i : i + step], self.remaining())
            for i in range(0, len(rows), step)
        ]
        emb = (
            torch.from_numpy(np.concatenate(parts)).reshape(len(labels), len(temps), -1).mean(dim=1)
        )
        weights = F.normalize(emb, dim=-1)
        with self._cache_lock:
            self._classifiers[key] = weights
            while len(self._classifiers) > CLASSIFIER_CACHE:
                self._classifiers.popitem(last=False)
        return weights

    def explain(self, image, text: str, method: str):
        """A heatmap of a decoded image (decode it with :meth:`decode` first)."""
        self.check_texts([text], "text")
        with self.compute_lock:
            return self.explainer.explain(image, [text], [method])[0]
