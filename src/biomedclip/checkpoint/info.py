"""``LoadInfo``: where a loaded model came from (``biomedclip info``; model identity for indexes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from biomedclip.checkpoint.integrity import sha256_file


@dataclass
class LoadInfo:
    """Source, files and weights digest of a loaded model (``"random init"`` for a fresh one)."""

    source: str
    weights: str | None = None
    config: str | None = None
    tokenizer_dir: str | None = None
    verified_release: bool = False
    _sha256: str | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str | None:
        """sha256 of the weights file, computed on first use (memoised on disk per file)."""
        if self._sha256 is None and self.weights:
            self._sha256 = sha256_file(self.weights)
        return self._sha256


RANDOM_INIT = "random init"
