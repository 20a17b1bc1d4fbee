"""Image-caption pairs for retrieval evaluation: moved to :mod:`biomedclip.pairs` (used by the PMC
pipeline too, which does not depend on evaluation); this import path keeps working."""

from biomedclip.pairs import (
    MedicatRecord,
    Pair,
    iter_medicat,
    read_medicat,
    read_pairs,
    read_pairs_csv,
)

__all__ = ["MedicatRecord", "Pair", "iter_medicat", "read_medicat", "read_pairs", "read_pairs_csv"]
