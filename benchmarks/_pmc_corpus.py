"""Build PMC-style packages and a mirror folder from ``.nxml`` files plus generated images.

Used by the PMC pipeline tests and ``pmc_throughput.py`` (not part of the installed package; tests
import it as ``benchmarks._pmc_corpus``). Packages are laid out like PMC's
(``oa_package/ab/cd/PMC123.tar.gz`` holding ``PMC123/<article>.nxml`` and the figure images, named
after the graphic hrefs), with an ``oa_file_list.csv`` beside them. Images are random block
patterns (distinct perceptual hashes), deterministic in their seed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from biomedclip.io_utils import tar_bytes
from biomedclip.pmc.jats import parse_article

FORMATS = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "tif": "TIFF"}


def figure_image(seed: int, fmt: str = "jpg", size: tuple[int, int] | None = None) -> bytes:
    """A deterministic random image (blocks + noise) of a few hundred pixels."""
    rng = np.random.default_rng(seed)
    w, h = size or (int(rng.integers(300, 1100)), int(rng.integers(220, 800)))
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(blocks).resize((w, h), Image.Resampling.NEAREST)
    arr = np.asarray(im).astype(np.int16) + rng.integers(-20, 20, size=(h, w, 1))
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if fmt == "gif":
        im = im.convert("P")
    im.save(buf, FORMATS[fmt])
    return buf.getvalue()


def set_pmcid(xml: bytes, pmcid: str) -> bytes:
    """The article XML with its ``pmc`` article-id replaced (to make distinct copies)."""
    number = pmcid.removeprefix("PMC")
    return re.sub(
        rb'(<article-id pub-id-type="pmc">)[^<]*(</article-id>)',
        rb"\g<1>" + number.encode() + rb"\g<2>",
        xml,
        count=1,
    )


def package_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A deterministic tar.gz of ``members``."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(tar_bytes(members))
    return out.getvalue()


def article_package(
    xml: bytes,
    pmcid: str,
    seed: int = 0,
    fmt_cycle: tuple[str, ...] = ("jpg",),
    skip_images: int = 0,
    xml_name: str = "article.nxml",
) -> bytes:
    """Package for one article: its XML and one generated image per figure graphic.

    ``skip_images`` leaves out that many images (the last figures'), for missing-image tests.
    """
    figures = parse_article(xml).figures
    members = [(f"{pmcid}/{xml_name}", xml)]
    hrefs = [f.graphic for f in figures if f.graphic]
    for i, href in enumerate(hrefs[: len(hrefs) - skip_images]):
        fmt = fmt_cycle[i % len(fmt_cycle)]
        data = figure_image(seed * 1000 + i, fmt)
        members.append((f"{pmcid}/{href}.{fmt}", data))
    return package_bytes(members)


def package_path(pmcid: str) -> str:
    h = hashlib.md5(pmcid.encode(), usedforsecurity=False).hexdigest()
    return f"oa_package/{h[:2]}/{h[2:4]}/{pmcid}.tar.gz"


def write_mirror(
    root: Path, packages: dict[str, bytes], rows: dict[str, dict] | None = None
) -> Path:
    """Write packages and ``oa_file_list.csv`` under ``root``; returns the list's path."""
    root = Path(root)
    rows = rows or {}
    with (root / "oa_file_list.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "File",
                "Article Citation",
                "Accession ID",
                "Last Updated (YYYY-MM-DD HH:MM:SS)",
                "PMID",
                "License",
            ]
        )
        for pmcid, data in packages.items():
            rel = package_path(pmcid)
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            r = rows.get(pmcid, {})
            w.writerow(
                [
                    rel,
                    r.get("citation", "J Test. 2012; 1(1):1"),
                    pmcid,
                    r.get("updated", "2020-01-01 00:00:00"),
                    r.get("pmid", ""),
                    r.get("license", "CC BY"),
                ]
            )
    return root / "oa_file_list.csv"


def real_corpus(
    nxml_dir: Path, copies: int = 1, fmt_cycle: tuple[str, ...] = ("jpg",)
) -> dict[str, bytes]:
    """Packages from every ``.nxml`` in ``nxml_dir``; with ``copies > 1`` each article is
    repeated under new PMCIDs (distinct images) to make a larger corpus."""
    out: dict[str, bytes] = {}
    files = sorted(Path(nxml_dir).glob("*.nxml"))
    for c in range(copies):
        for j, path in enumerate(files):
            xml = path.read_bytes()
            pmcid = parse_article(xml).meta.pmcid
            if copies > 1:
                pmcid = f"PMC{90_000_000 + c * 100 + j}"
                xml = set_pmcid(xml, pmcid)
            out[pmcid] = article_package(
                xml, pmcid, seed=c * 100 + j + 1, fmt_cycle=fmt_cycle, xml_name=path.name
            )
    return out
