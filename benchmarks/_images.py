"""Real benchmark images from ../shared/data: SLAKE, VQA-RAD and LC25000 JPEGs."""

from __future__ import annotations

from pathlib import Path

from _reference import SHARED


def real_jpegs(n: int = 500) -> list[Path]:
    """``n`` real JPEGs, mixing SLAKE (CT/MRI/X-ray), VQA-RAD (radiology) and LC25000 (histology)."""
    pools = [
        sorted((SHARED / "slake" / "imgs").glob("*/source.jpg")),
        sorted((SHARED / "vqa_rad" / "images").glob("*.jpg")),
        sorted((SHARED / "lc25000_lung").glob("*/*.jpeg")),
    ]
    if not all(pools):
        raise FileNotFoundError(f"benchmark images not found under {SHARED}")
    out: list[Path] = []
    i = 0
    while len(out) < n:  # round-robin over the pools
        pool = pools[i % 3]
        k = i // 3
        if k < len(pool):
            out.append(pool[k])
        i += 1
        if i > 3 * max(map(len, pools)):
            break
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} images available")
    return out
