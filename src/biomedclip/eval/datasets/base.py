"""What every dataset adapter returns: a :class:`LabelledSet` (ids, labels, lazily read images).

Images are never decoded here: ``sources(positions)`` returns what the encoding engine reads (paths,
bytes or PIL images), so a 300k-patch PCam split costs nothing until its features are computed.
Adapters for datasets without an official split use :func:`hash_split`: a stratified split decided
by a hash of each item's id, so it does not depend on file-system order and never changes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import InputError

SPLITS = ("train", "val", "test")
# train / val / test fractions of hash_split (per class)
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)

ImageSource = Any  # str | Path | bytes | PIL.Image.Image


@dataclass
class LabelledSet:
    """One split of a classification dataset.

    ``labels`` is ``[N]`` int64 class indices, or ``[N, C]`` 0/1 for multi-label sets.
    ``fingerprint`` identifies the data (ids, labels, file sizes and times) for the feature cache.
    """

    name: str
    split: str
    classes: list[str]
    ids: list[str]
    labels: np.ndarray
    paths: Sequence[ImageSource] | None = None
    loader: Callable[[Sequence[int]], list[ImageSource]] | None = None
    root: Path | None = None
    notes: list[str] = field(default_factory=list)
    groups: list[str] | None = None  # items sharing a group never straddle a split
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if len(self.ids) != len(self.labels):
            raise InputError(
                f"{self.name}/{self.split}: {len(self.ids)} ids vs {len(self.labels)} labels"
            )
        if self.paths is None and self.loader is None:
            raise InputError(f"{self.name}/{self.split}: no paths and no loader")
        if not self.ids:
            raise InputError(f"{self.name}/{self.split}: no images")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    def sources(self, positions: Sequence[int]) -> list[ImageSource]:
        """What the encoder reads for the items at ``positions``."""
        if self.loader is not None:
            return self.loader(positions)
        assert self.paths is not None
        return [self.paths[i] for i in positions]

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\n".join(self.classes).encode())
            h.update("\n".join(self.ids).encode())
            h.update(np.ascontiguousarray(self.labels.astype(np.int64)).tobytes())
            for p in self.paths or ():
                if isinstance(p, (str, os.PathLike)):
                    try:
                        st = os.stat(p)
                        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
                    except OSError:
                        h.update(f"{p}:missing".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def class_counts(self) -> dict[str, int]:
        counts = (
            self.labels.sum(0)
            if self.multilabel
            else np.bincount(self.labels, minlength=len(self.classes))
        )
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def subset(self, positions: Sequence[int], split: str | None = None) -> LabelledSet:
        pos = list(positions)
        paths = [self.paths[i] for i in pos] if self.paths is not None else None
        loader = None
        if self.loader is not None:
            parent = self.loader
            loader = lambda sub: parent([pos[i] for i in sub])  # noqa: E731
        return LabelledSet(
            self.name,
            split or self.split,
            self.classes,
            [self.ids[i] for i in pos],
            self.labels[pos],
            paths,
            loader,
            self.root,
            list(self.notes),
            [self.groups[i] for i in pos] if self.groups is not None else None,
        )


def _hash01(key: str, seed: int) -> float:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(
    ids: Sequence[str],
    labels: np.ndarray,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """Stratified train/val/test positions decided by a hash of each item's group (its id when
    ``groups`` is None): per class (a group's class is that of its first item), groups in hash
    order fill test, then val, then train, up to the fractions of the class's items. Items of one
    group always land in the same split."""
    labels = np.asarray(labels)
    strata = labels.argmax(1) if labels.ndim == 2 else labels
    keys = list(groups) if groups is not None else list(ids)
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    by_class: dict[int, list[str]] = {}
    for k, m in members.items():
        by_class.setdefault(int(strata[m[0]]), []).append(k)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in sorted(by_class):
        order = sorted(by_class[c], key=lambda k: (_hash01(k, seed), k))
        n = sum(len(members[k]) for k in order)
        n_test = round(n * fractions[2])
        n_val = round(n * fractions[1])
        done = 0
        for k in order:
            split = "test" if done < n_test else "val" if done < n_test + n_val else "train"
            out[split] += members[k]
            done += len(members[k])
    return {s: sorted(int(i) for i in v) for s, v in out.items()}


def n_groups(ds: LabelledSet) -> int:
    return len(set(ds.groups)) if ds.groups is not None else len(ds)


def split_set(full: LabelledSet, split: str, seed: int = 0) -> LabelledSet:
    """``split`` (train / val / test / all) of a set that has no official split."""
    if split == "all":
        return full
    if split not in SPLITS:
        raise InputError(f"{full.name}: unknown split {split!r} (use train, val, test or all)")
    positions = hash_split(full.ids, full.labels, seed=seed, groups=full.groups)[split]
    if not positions:
        raise InputError(f"{full.name}: split {split!r} is empty ({len(full)} images in all)")
    out = full.subset(positions, split)
    out.notes.append(
        f"no official split: stratified 70/10/20 train/val/test by a hash (seed {seed}) of each "
        f"item's group; {len(full)} images in {n_groups(full)} groups"
    )
    return out


def require_file(path: Path, dataset: str, hint: str = "") -> Path:
    """``path`` if it is a file, else an error naming the file the adapter expected."""
    if not path.is_file():
        raise InputError(
            f"{dataset}: expected file {path} not found" + (f" ({hint})" if hint else "")
        )
    return path


def require_dir(path: Path, dataset: str, hint: str = "") -> Path:
    if not path.is_dir():
        raise InputError(
            f"{dataset}: expected folder {path} not found" + (f" ({hint})" if hint else "")
        )
    return path
