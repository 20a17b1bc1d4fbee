"""Duplicate removal across the whole corpus: exact (SHA-256 of the source image) and near
(perceptual hashes within a Hamming distance), in a fixed order so the result is deterministic.

Near duplicates are found with a multi-index: the 64-bit hash is cut into ``distance + 1`` blocks;
two hashes within ``distance`` bits agree exactly on at least one block (pigeonhole), so only
hashes sharing a block are compared.
"""

from __future__ import annotations

from collections import defaultdict


class Deduplicator:
    """Feed pairs in a fixed order; the first occurrence is kept."""

    def __init__(self, phash_distance: int = 4):
        if not 0 <= phash_distance < 32:
            raise ValueError("phash distance must be in [0, 32)")
        self.distance = phash_distance
        self.exact: dict[bytes, str] = {}  # 16-byte SHA-256 prefix -> key (compact at 15M pairs)
        n_blocks = phash_distance + 1
        width = -(-64 // n_blocks)
        self._blocks = [(i * width, min(64, (i + 1) * width)) for i in range(n_blocks)]
        self._blocks = [(a, b) for a, b in self._blocks if a < b]
        self._index: list[dict[int, list[tuple[int, str]]]] = [
            defaultdict(list) for _ in self._blocks
        ]

    def _parts(self, h: int) -> list[int]:
        return [(h >> a) & ((1 << (b - a)) - 1) for a, b in self._blocks]

    def check(self, key: str, sha256: str, phash: str) -> tuple[str, str] | None:
        """``None`` if new (and remember it), else ``(reason, key of the kept original)``."""
        digest = bytes.fromhex(sha256[:32]) if len(sha256) >= 32 else sha256.encode()
        if digest in self.exact:
            return "duplicate_exact", self.exact[digest]
        h = int(phash, 16)
        parts = self._parts(h)
        for idx, part in zip(self._index, parts):
            for other, other_key in idx.get(part, ()):
                if (h ^ other).bit_count() <= self.distance:
                    return "duplicate_near", other_key
        self.exact[digest] = key
        for idx, part in zip(self._index, parts):
            idx[part].append((h, key))
        return None
