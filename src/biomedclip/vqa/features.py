"""Image-token cache for a frozen image tower: every image encoded once, reused every epoch.

Tokens (``[1 + n_patches, width]`` per image, from ``encode_image(..., return_tokens=True)``) are
written in parts of ``part_size`` images (``part-00000.safetensors``, atomic), so an interrupted
run keeps what it finished. The cache folder is keyed by the image tower's identity (the weights
file's sha256, or a digest of the tower's tensors for models not read from a file) and the
preprocessing config, so a cache never serves tokens of another model or another transform.
Images that cannot be read are listed in ``failures.json`` with the reason, the rest are cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from biomedclip.checkpoint.save import atomic_save_safetensors
from biomedclip.imaging import ReadOptions
from biomedclip.io_utils import atomic_write_json
from biomedclip.model import BiomedCLIP

log = logging.getLogger(__name__)
CACHE_VERSION = "vqa-image-tokens/1"


def tower_digest(model: BiomedCLIP) -> str:
    """sha256 of the weights file the model came from, else of the image tower's tensors."""
    info = getattr(model, "load_info", None)
    digest = getattr(info, "sha256", None) if info is not None else None
    if digest:
        return digest
    h = hashlib.sha256()
    for name, t in sorted(model.visual.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return "tower:" + h.hexdigest()


def cache_key(model: BiomedCLIP) -> str:
    spec = {
        "version": CACHE_VERSION,
        "weights": tower_digest(model),
        "preprocess": dataclasses.asdict(model.config.preprocess),
        "vision": dataclasses.asdict(model.config.vision),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FeatureCache:
    """``tokens(paths)`` -> a dict path -> ``[T, W]`` float32 tensor (and ``failures``)."""

    def __init__(self, root: str | Path | None, model: BiomedCLIP, preprocess: Callable):
        """``root`` None keeps the tokens in memory only (nothing written)."""
        self.model, self.preprocess = model, preprocess
        self.dir = Path(root) / cache_key(model) if root is not None else None
        self.failures: dict[str, str] = {}

    def _load_parts(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.dir is None:
            return out
        for part in sorted(self.dir.glob("part-*.safetensors")):
            with safe_open(str(part), framework="pt") as f:
                names = json.loads(f.metadata()["images"])
                tokens = f.get_tensor("tokens")
            out.update(zip(names, tokens.unbind(0)))
        path = self.dir / "failures.json"
        if path.is_file():
            self.failures = json.loads(path.read_text(encoding="utf-8"))
        return out

    def tokens(
        self,
        paths: Sequence[str],
        batch_size: int = 32,
        workers: int = 0,
        part_size: int = 256,
        progress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Tokens of every readable image in ``paths``, encoding only those not cached yet."""
        have = self._load_parts()
        todo = sorted({p for p in paths if p not in have and p not in self.failures})
        n_parts = len(list(self.dir.glob("part-*.safetensors"))) if self.dir else 0
        if self.dir is not None and todo:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                self.dir / "meta.json",
                {"version": CACHE_VERSION, "weights": tower_digest(self.model)},
            )
        for start in range(0, len(todo), part_size):
            chunk = todo[start : start + part_size]
            names, tokens = self._encode(chunk, batch_size, workers, progress)
            have.update(zip(names, tokens))
            if self.dir is None:
                continue
            if names:
                atomic_save_safetensors(
                    {"tokens": torch.stack(tokens)},
                    self.dir / f"part-{n_parts:05d}.safetensors",
                    metadata={"images": json.dumps(names)},
                )
                n_parts += 1
            atomic_write_json(self.dir / "failures.json", self.failures)
        if self.failures:
            log.warning("%d image(s) could not be read", len(self.failures))
        return {p: have[p] for p in paths if p in have}

    def _encode(self, chunk, batch_size, workers, progress):
        """Decode through the encoding engine's image stream (imaging reader, preprocess, failures
        per item) and encode with :meth:`Encoder.encode_pixel_tokens`."""
        from torch.utils.data import DataLoader

        from biomedclip.embedding import Encoder, EncoderSettings
        from biomedclip.embedding.batching import ImageBatchStream, identity_collate
        from biomedclip.embedding.inputs import image_items

        read = ReadOptions(mode=None, wsi="thumbnail")
        encoder = Encoder(
            self.model, self.preprocess, settings=EncoderSettings(batch_size=batch_size, read=read)
        )
        stream = ImageBatchStream(
            image_items(chunk, ids=chunk), encoder.preprocess, batch_size, options=read
        )
        loader = DataLoader(
            stream, batch_size=None, num_workers=workers, collate_fn=identity_collate
        )
        names, tokens = [], []
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, desc="caching image tokens", unit="batch")
        for batch in loader:
            for f in batch.failures:
                self.failures[f.id] = f.error
            if batch.pixels is None:
                continue
            tok = encoder.encode_pixel_tokens(batch.pixels).cpu()
            seen: set[int] = set()
            for row, owner in enumerate(batch.owners):  # multi-frame inputs: the first image
                if owner not in seen:
                    seen.add(owner)
                    names.append(batch.items[owner].id)
                    tokens.append(tok[row])
        return names, tokens
