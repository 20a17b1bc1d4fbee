"""Groups that must not straddle a split: patients, and near-duplicate images.

* :func:`tcga_patient`: the TCGA patient barcode (``TCGA-XX-XXXX``) in a tile's path.
* :func:`near_duplicate_groups`: images that are flips, 90-degree rotations or small crops of
  one another (LC25000 was made by augmenting 750 source images with rotations and flips, so its
  images are not independent). Each image gets the perceptual hash (DCT pHash, 64 bits,
  ``imagehash.phash``) of each of its 8 dihedral transforms; two images are near-duplicates when
  some transform of one is within ``max_distance`` bits of the other (a small crop moves a pHash
  by a few bits; unrelated tiles differ in ~32). Near-duplicate pairs are joined transitively
  (union-find). The pairwise comparison is blocked numpy popcounts (15,000 images: seconds).
  Images are decoded through :func:`biomedclip.imaging.load_image` (the one decoding path, under
  its pixel limit): a whole slide (``.svs``, ``.ndpi``, pyramidal TIFF) is hashed by its
  thumbnail, DICOM / NIfTI by their representative frame or slice. A file that cannot be read
  is reported (:class:`DuplicateGroups` ``unreadable``: path -> error; a warning and a dataset
  note name it) and left in a group of its own, never given a shared hash.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from biomedclip.errors import ImageError, InputError

log = logging.getLogger(__name__)

MAX_DISTANCE = 10
_TCGA = re.compile(r"TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}", re.IGNORECASE)
_cache: dict[tuple, np.ndarray | str] = {}
_POPCOUNT = np.asarray([bin(i).count("1") for i in range(256)], np.uint8)


def tcga_patient(item_id: str) -> str | None:
    """The patient barcode (``TCGA-TSS-PARTICIPANT``) in ``item_id``, upper-cased, or None."""
    m = _TCGA.search(item_id)
    return m.group(0).upper() if m else None


def _dihedral_hashes(path) -> np.ndarray | str:
    """``[8]`` uint64 pHashes of the image's 8 flips/rotations, or why it cannot be read."""
    try:
        import imagehash
    except ImportError as e:  # pragma: no cover - an install without the eval extra
        raise InputError(
            "grouping near-duplicate images needs imagehash: pip install 'biomedclip[eval]'"
        ) from e
    from PIL import Image

    from biomedclip.imaging import load_image

    try:  # a slide: its thumbnail; never a full-resolution decode
        with load_image(path, mode=None) as im:
            small = im.convert("L").resize((64, 64), Image.Resampling.LANCZOS)
    except (ImageError, OSError) as e:
        return str(e) or type(e).__name__
    out = []
    for rot in (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                Image.Transpose.ROTATE_270):  # fmt: skip
        base = small if rot is None else small.transpose(rot)
        for img in (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)):
            bits = imagehash.phash(img).hash.reshape(-1)
            out.append(int("".join("1" if b else "0" for b in bits), 2))
    return np.asarray(out, np.uint64)


class ImageHashes(NamedTuple):
    hashes: np.ndarray  # [N, 8] uint64 (rows of unreadable files are zeros and never compared)
    unreadable: dict[int, str]  # position -> why it could not be read


def phashes(paths: Sequence) -> ImageHashes:
    """Dihedral pHashes of ``paths``, cached per (path, size, mtime) within the process."""
    rows, unreadable = [], {}
    for k, p in enumerate(paths):
        try:
            st = os.stat(p)
            key = (str(p), st.st_size, st.st_mtime_ns)
        except OSError:
            key = (str(p), -1, -1)
        if key not in _cache:
            _cache[key] = _dihedral_hashes(p)
        value = _cache[key]
        if isinstance(value, str):
            unreadable[k] = value
            value = np.zeros(8, np.uint64)
        rows.append(value)
    return ImageHashes(np.stack(rows) if rows else np.zeros((0, 8), np.uint64), unreadable)


class DuplicateGroups(NamedTuple):
    groups: list[int]  # a group number per image
    unreadable: dict[str, str]  # path -> why it could not be read (each in its own group)


def near_duplicate_groups(
    paths: Sequence, max_distance: int = MAX_DISTANCE, block: int = 64
) -> DuplicateGroups:
    """A group number per image: near-duplicates (flip / rotation / small crop) share one; each
    unreadable file is alone in its group and listed with the reason."""
    h, bad = phashes(paths)
    n = len(h)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    readable = np.asarray([i for i in range(n) if i not in bad], np.int64)
    if len(readable):
        base = h[readable, 0]  # [M]
        allt = h[readable]  # [M, 8]
        for start in range(0, len(readable), block):
            a = base[start : start + block]  # [b]
            x = np.bitwise_xor(a[:, None, None], allt[None, :, :])  # [b, M, 8]
            bits = _POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.int16)
            dist = bits.min(-1)  # [b, M]: the closest of the 8 transforms
            for i, j in zip(*np.nonzero(dist <= max_distance)):
                gi, gj = readable[start + i], readable[j]
                if gi < gj:
                    ri, rj = find(gi), find(gj)
                    if ri != rj:
                        parent[max(ri, rj)] = min(ri, rj)
    return DuplicateGroups([find(i) for i in range(n)], {str(paths[i]): e for i, e in bad.items()})


def assign_groups(ds, patient: bool = False, images: bool = True) -> None:
    """Set ``ds.groups`` (in place): by TCGA patient barcode (``patient``) and near-duplicate
    images (``images``, when the items are files), merged: one group per connected set."""
    n = len(ds)
    keys: list[str] = [f"id:{i}" for i in ds.ids]
    if patient:
        for k, i in enumerate(ds.ids):
            pid = tcga_patient(i)
            if pid:
                keys[k] = f"patient:{pid}"
    if images and ds.paths is not None and all(isinstance(p, (str, Path)) for p in ds.paths):
        dup, unreadable = near_duplicate_groups(ds.paths)
        if unreadable:
            shown = [e if p in e else f"{p} ({e})" for p, e in list(unreadable.items())[:5]]
            more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
            note = (f"near-duplicate grouping: {len(unreadable)} unreadable file(s) kept in "
                    f"groups of their own: {'; '.join(shown)}{more}")  # fmt: skip
            log.warning("%s: %s", ds.name, note)
            ds.notes.append(note)
        # merge: items of one near-duplicate set take the key of its first member's group
        first: dict[int, str] = {}
        alias: dict[str, str] = {}

        def root(k: str) -> str:
            while k in alias:
                k = alias[k]
            return k

        for k in range(n):
            g = dup[k]
            if g not in first:
                first[g] = root(keys[k])
            else:
                a, b = root(keys[k]), root(first[g])
                if a != b:
                    alias[a] = b
        keys = [root(k) for k in keys]
    ds.groups = keys


def column_groups(values: Sequence[str], column: str, table) -> list[str]:
    empty = [i for i, v in enumerate(values) if not v]
    if empty:
        raise InputError(f"{table}, data row {empty[0] + 1}: empty {column!r} (--group-by)")
    return [f"{column}:{v}" for v in values]
