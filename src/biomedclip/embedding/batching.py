"""Turning items into model batches: images decoded in DataLoader workers, texts bucketed by length."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from biomedclip.embedding.sources import Item, Source
from biomedclip.errors import BiomedCLIPError, ImageError, InputError
from biomedclip.imaging import read_image
from biomedclip.imaging.options import ReadOptions
from biomedclip.tokenizer import Tokenizer


@dataclass
class Failure:
    """An input that could not be embedded, and why."""

    id: str
    path: str | None
    modality: str
    error: str

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "modality": self.modality, "error": self.error}


@dataclass
class ImageBatch:
    """Decoded, preprocessed images of one batch of items.

    ``pixels`` holds every image of the batch's ``items``: one for a plain file, several for a
    multi-frame DICOM, a NIfTI volume's slices or a whole slide's tiles (never split between
    batches). ``owners[r]`` is the index in ``items`` of image ``r`` and ``parts[r]`` what it is.
    ``failures`` are the items that did not decode.
    """

    items: list[Item]
    pixels: torch.Tensor | None
    failures: list[Failure] = field(default_factory=list)
    failed_items: list[Item] = field(default_factory=list)  # their captions may still be embedded
    owners: list[int] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)


def batched(iterable: Iterable, n: int) -> Iterator[list]:
    it = iter(iterable)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


SLIDE_KEYS = ("level", "magnification", "tile_size", "tissue_tiles", "sampled", "downsample")


def decode_item(
    item: Item, preprocess: Callable, options: ReadOptions
) -> list[tuple[torch.Tensor, dict]]:
    """Preprocessed images of one item with what each one is (``{}`` for a single image).

    Files and bytes go through :func:`~biomedclip.imaging.read_image` with ``options`` (DICOM
    window and frames, NIfTI slices, whole-slide tiles); an in-memory PIL image is used as is.
    8-bit images are kept as stored so that the preprocess converts after resize and crop, as the
    reference does.
    """
    if item.image is not None:
        return [(preprocess(item.image), {})]
    if item.data is None and item.path is None:
        raise ImageError("no image for this item", item.id)
    try:
        record = read_image(item.data if item.data is not None else item.path, options)
    except ImageError as e:
        if item.data is not None and item.path:  # bytes: name the member, not "<bytes>"
            raise type(e)(str(e).removeprefix("<bytes>: "), item.path) from e
        raise
    if not record.images:
        raise ImageError("no image in this input (no tissue tiles, frames or slices)", item.path)
    meta = record.metadata
    multi = len(record.images) > 1 or meta.get("format") == "wsi"
    slide = {k: meta[k] for k in SLIDE_KEYS if k in meta} if meta.get("format") == "wsi" else None
    out = []
    for i, im in enumerate(record.images):
        part = dict(record.item(i)) if multi else {}
        if slide is not None and part.get("tile"):
            part["slide"] = slide  # the slide's tiling, shared by its tiles
        out.append((preprocess(im), part))
    return out


class ImageBatchStream(IterableDataset):
    """Batches of decoded images. With several DataLoader workers, listing sources are split batch by
    batch and shard sources shard by shard, so each worker decodes a disjoint part."""

    def __init__(
        self,
        source: Source,
        preprocess: Callable,
        batch_size: int,
        skip: frozenset[str] = frozenset(),
        options: ReadOptions | None = None,
    ):
        super().__init__()
        self.source, self.preprocess, self.batch_size = source, preprocess, batch_size
        self.skip = skip
        self.options = options or ReadOptions(mode=None)

    def _pending(self, items: Iterable[Item]) -> Iterator[Item]:
        return (it for it in items if it.id not in self.skip)

    def __iter__(self) -> Iterator[ImageBatch]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        shards = self.source.shards()
        if shards is None:
            for k, chunk in enumerate(batched(self._pending(self.source.items()), self.batch_size)):
                if k % nw == wid:
                    yield self.decode(chunk)
            return
        for shard in shards[wid::nw]:
            try:
                for chunk in batched(
                    self._pending(self.source.shard_items(shard)), self.batch_size
                ):
                    yield self.decode(chunk)
            except InputError as e:  # an unreadable shard must not stop the others
                yield ImageBatch([], None, [Failure(str(shard), str(shard), "image", str(e))])

    def decode(self, chunk: list[Item]) -> ImageBatch:
        """Decode a chunk of items; a bad item becomes a failure, never the batch's end."""
        good, tensors, failures, failed_items = [], [], [], []
        owners, parts = [], []
        for item in chunk:
            try:
                decoded = decode_item(item, self.preprocess, self.options)
            except BiomedCLIPError as e:
                failures.append(Failure(item.id, item.path, "image", str(e)))
                failed_items.append(item)
            except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
                failures.append(
                    Failure(item.id, item.path, "image", f"{item.path}: {type(e).__name__}: {e}")
                )
                failed_items.append(item)
            else:
                for tensor, part in decoded:
                    tensors.append(tensor)
                    owners.append(len(good))
                    parts.append(part)
                good.append(item)
            item.data = None  # do not ship image bytes back to the main process
            item.image = None
        pixels = torch.stack(tensors) if tensors else None
        return ImageBatch(good, pixels, failures, failed_items, owners, parts)


def identity_collate(batch):
    return batch


# ---- text -------------------------------------------------------------------------------------
@dataclass
class TextBatch:
    items: list[Item]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    truncated: int = 0


def text_batches(
    tokenizer: Tokenizer,
    items: list[Item],
    batch_size: int,
    token_budget: int | None = None,
    max_padding: float = 0.1,
) -> tuple[list[TextBatch], list[Failure]]:
    """Tokenise once, sort by length and cut into batches padded only to their longest text.

    A batch holds at most ``batch_size`` texts and, when ``token_budget`` is set, at most that many
    padded tokens. A new batch also starts where adding the next (longer) text would make padding
    more than ``max_padding`` of the batch's tokens, so similar lengths share a batch and almost no
    compute goes to padding. Empty texts become failures instead of breaking the batch.
    """
    failures = [
        Failure(it.id, it.path, "text", f"{it.id}: no text") for it in items if it.text is None
    ]
    items = [it for it in items if it.text is not None]
    if not items:
        return [], failures
    tb = tokenizer([it.text for it in items], padding="longest", allow_empty=True, warn=False)
    lengths = tb.lengths
    keep = [i for i, n in enumerate(lengths) if n > 2]
    for i, n in enumerate(lengths):
        if n <= 2:
            failures.append(
                Failure(
                    items[i].id,
                    items[i].path,
                    "text",
                    f"{items[i].id}: text is empty after cleaning",
                )
            )
    order = sorted(keep, key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0  # real (unpadded) tokens in ``current``
    for i in order:
        n = lengths[i]
        rows = len(current) + 1
        if current and (
            rows > batch_size
            or (token_budget and rows * n > token_budget)
            or rows * n - (real + n) > max_padding * rows * n
        ):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        groups.append(current)
    batches = []
    for idx in groups:
        width = lengths[idx[-1]]
        rows = torch.tensor(idx)
        batches.append(
            TextBatch(
                [items[i] for i in idx],
                tb.input_ids[rows, :width].contiguous(),
                tb.attention_mask[rows, :width].contiguous(),
                sum(tb.truncated[i] for i in idx),
            )
        )
    return batches, failures
