"""Stage ``pair``: resolve each figure's graphic to its image, convert it, and filter the pair.

Images are decoded (jpg/png/gif/tif), converted to RGB and resized to ``max_side`` (aspect kept),
and re-encoded as JPEG; the source bytes' SHA-256 and a 64-bit perceptual hash of the converted
image go with the pair for deduplication. Captions are measured in tokens of the project
tokenizer. Dropped figures are kept in the result with a reason, never silently lost.
The per-article result is one tar written atomically (``meta.json`` first, then ``<key>.jpg``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from biomedclip.errors import (
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
)
from biomedclip.io_utils import atomic_write_bytes, tar_bytes
from biomedclip.pmc.config import PairConfig
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.jats import Extracted
from biomedclip.pmc.package import Package
from biomedclip.pmc.state import WorkDir

log = logging.getLogger(__name__)


@dataclass
class Converted:
    jpeg: bytes
    orig_width: int
    orig_height: int
    width: int
    height: int
    sha256: str
    phash: str


class PairDrop(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@lru_cache(maxsize=4)
def get_tokenizer(directory: str | None):
    """The tokenizer that measures captions (cached per process)."""
    from biomedclip.tokenizer import Tokenizer

    if directory is None:  # the released PubMedBERT tokenizer, bundled in the package
        return Tokenizer.bundled()
    return Tokenizer.from_pretrained(directory)


def convert_image(data: bytes, name: str, cfg: PairConfig) -> Converted:
    """Decode, check, resize and re-encode one image; raises :class:`PairDrop`."""
    import imagehash
    from PIL import Image

    from biomedclip.imaging import load_image

    if not data:
        raise PairDrop("decode_error", f"{name}: empty file")
    try:
        im = load_image(data, mode="RGB", max_pixels=cfg.max_pixels)
    except ImageTooLargeError as e:
        raise PairDrop("image_too_large", f"{name}: {e}") from e
    except UnsupportedFormatError as e:
        raise PairDrop("unsupported_format", f"{name}: {e}") from e
    except (ImageDecodeError, ImageError) as e:
        raise PairDrop("decode_error", f"{name}: {e}") from e
    w, h = im.size
    if min(w, h) < cfg.min_side:
        raise PairDrop("too_small", f"{name}: {w}x{h} is below the minimum side {cfg.min_side}")
    scale = cfg.max_side / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=cfg.jpeg_quality, optimize=False, progressive=False)
    return Converted(
        jpeg=buf.getvalue(),
        orig_width=w,
        orig_height=h,
        width=im.width,
        height=im.height,
        sha256=hashlib.sha256(data).hexdigest(),
        phash=str(imagehash.phash(im)),
    )


def merged_meta(ref: ArticleRef, extracted: Extracted) -> dict:
    """Article metadata for every sample: the file list wins where it is more standard."""
    m = extracted.meta
    return {
        "pmcid": ref.pmcid,
        "pmid": ref.pmid or m.pmid,
        "doi": m.doi,
        "journal": m.journal or ref.journal,
        "year": m.year or ref.year,
        "license": ref.license or m.license,
        "article_type": m.article_type,
    }


def pair_key(article_id: str, index: int) -> str:
    """WebDataset key: no dots (webdataset splits extensions at the first dot)."""
    return f"{article_id.replace('.', '_')}_{index:03d}"


def pair_figures(ref: ArticleRef, pkg: Package, extracted: Extracted, cfg: PairConfig) -> dict:
    """Pair every figure of one article; returns the result's ``meta.json`` content with images."""
    figures = extracted.figures
    captions = [f.caption for f in figures]
    tokens = get_tokenizer(cfg.tokenizer_dir).count_tokens(captions) if captions else []
    pairs, drops, images = [], [], {}
    for fig, n_tok in zip(figures, tokens):
        key = pair_key(ref.pmcid, fig.index)
        base = {"key": key, "fig_id": fig.fig_id, "label": fig.label, "graphic": fig.graphic}
        try:
            if not fig.caption:
                raise PairDrop("empty_caption")
            if n_tok < cfg.min_caption_tokens:
                raise PairDrop("caption_too_short", f"{n_tok} tokens")
            if cfg.max_caption_tokens and n_tok > cfg.max_caption_tokens:
                raise PairDrop("caption_too_long", f"{n_tok} tokens")
            if not fig.graphic:
                raise PairDrop("no_graphic", "figure has no <graphic>")
            member = pkg.resolve(fig.graphic)
            if member is None:
                raise PairDrop("missing_image", f"{fig.graphic}: not in the package")
            conv = convert_image(pkg.images[member], member, cfg)
        except PairDrop as e:
            drops.append({**base, "reason": e.reason, "detail": e.detail, "caption_tokens": n_tok})
            continue
        images[key] = conv.jpeg
        pairs.append(
            {
                **base,
                "caption": fig.caption,
                "caption_tokens": n_tok,
                "member": member,
                "width": conv.width,
                "height": conv.height,
                "orig_width": conv.orig_width,
                "orig_height": conv.orig_height,
                "sha256": conv.sha256,
                "phash": conv.phash,
                "jpeg_bytes": len(conv.jpeg),
            }
        )
    return {"pairs": pairs, "drops": drops, "images": images}


def write_paired(
    work: WorkDir, ref: ArticleRef, extracted: Extracted, result: dict, digest: str
) -> Path:
    meta = {
        "article": ref.pmcid,
        "settings": digest,
        "meta": merged_meta(ref, extracted),
        "figures": len(extracted.figures),
        "pairs": result["pairs"],
        "drops": result["drops"],
    }
    members = [("meta.json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())]
    members += [(f"{p['key']}.jpg", result["images"][p["key"]]) for p in result["pairs"]]
    path = work.paired(ref.pmcid)
    atomic_write_bytes(path, tar_bytes(members))
    return path
