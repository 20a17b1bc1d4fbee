"""Items for the API's in-memory inputs: paths, file bytes, PIL images, strings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from biomedclip.embedding.sources import Item, ListSource
from biomedclip.errors import InputError


def as_list(inputs: Any) -> list[Any]:
    """One input (a path, bytes, a PIL image or a string) or a sequence of inputs, as a list."""
    if isinstance(inputs, (str, Path, os.PathLike, bytes)) or hasattr(inputs, "getbands"):
        return [inputs]
    return list(inputs)


def _ids(n: int, ids: Sequence[str] | None, what: str) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise InputError(f"{len(ids)} ids for {n} {what}")
    return ids


def image_items(images: Any, ids: Sequence[str] | None = None) -> ListSource:
    """A source of image inputs: paths (``path``), raw file bytes (``data``) or PIL images."""
    images = as_list(images)
    if not images:
        raise InputError("no images given")
    items = []
    for i, (key, im) in enumerate(zip(_ids(len(images), ids, "images"), images)):
        if isinstance(im, (str, Path, os.PathLike)):
            items.append(Item(key, path=os.fspath(im)))
        elif isinstance(im, (bytes, bytearray, memoryview)):
            items.append(Item(key, path=f"<image #{i}>", data=bytes(im)))
        elif hasattr(im, "getbands"):  # a PIL image
            items.append(Item(key, path=f"<PIL image #{i}>", image=im))
        else:
            raise InputError(f"image #{i}: {type(im).__name__} is not a path, bytes or PIL image")
    return ListSource(items, True, False, description="images")


def text_items(texts: Any, ids: Sequence[str] | None = None) -> ListSource:
    """A source of texts; ``None`` or blank texts are reported as failures when encoded."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise InputError("no texts given")
    keys = _ids(len(texts), ids, "texts")
    items = [Item(k, text=None if t is None else str(t)) for k, t in zip(keys, texts)]
    return ListSource(items, False, True, description="texts")
