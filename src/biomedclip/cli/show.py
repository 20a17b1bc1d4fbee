"""``biomedclip show``: write what the model sees of an input (after windowing, resize and crop)."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, console, print_json
from biomedclip.cli.image_args import add_image_args, read_options_from_args

HELP = "write a preview PNG of what the model sees (windowing, resize, centre crop)"
DESCRIPTION = """\
Decode FILE the way classify/embed do (DICOM windowing and MONOCHROME1 inversion, NIfTI slicing,
16-bit scaling, slide tiling), apply the model's eval resize and centre crop, and write the result
without normalisation to --out, so you can check what goes into the image encoder. Several images
(frames, slices, tiles) are laid out as a grid. The input size comes from --image-size or the
--model's config (default 224, BiomedCLIP's).

examples:
  biomedclip show chest_ct.dcm --out preview.png --window lung
  biomedclip show brain.nii.gz --out slices.png --slices 9 --plane coronal
  biomedclip show slide.svs --out tiles.png --max-tiles 16 --magnification 10
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="an image, DICOM, NIfTI or whole-slide file")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: from --model, else 224)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="take the image size and interpolation from this model's config "
        "(hub id or directory; no weights needed)",
    )
    p.add_argument("--cache-dir", default=None, help="hub cache directory (with --model)")
    p.add_argument(
        "--no-crop",
        action="store_true",
        help="write the decoded image(s) before resize/crop (full resolution)",
    )
    add_image_args(p, slides=True, max_tiles=16)
    add_json_flag(p)
    p.set_defaults(func=run)


def _preprocess_config(args: argparse.Namespace):
    from dataclasses import replace

    from biomedclip.config import ModelConfig, PreprocessConfig

    cfg = PreprocessConfig()
    if args.model:
        from biomedclip.checkpoint.hub import resolve_source

        resolved = resolve_source(args.model, cache_dir=args.cache_dir, need_weights=False)
        if resolved.config is not None:
            cfg = ModelConfig.from_file(resolved.config).preprocess
    if args.image_size:
        cfg = replace(cfg, image_size=args.image_size)
    return cfg


def model_view(image, cfg):
    """The eval transform's resize + centre crop (+ RGB), without tensor conversion/normalisation."""
    from torchvision import transforms as T

    from biomedclip.transforms import ToRGB, _interpolation

    ops = T.Compose(
        [
            T.Resize(
                cfg.image_size, interpolation=_interpolation(cfg.interpolation), antialias=True
            ),
            T.CenterCrop(cfg.image_size),
            ToRGB(),
        ]
    )
    return ops(image)


def grid(images, pad: int = 4):
    """Lay out images on a white grid, row-major, about square."""
    import math

    from PIL import Image

    if len(images) == 1:
        return images[0]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    sheet = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet.paste(im.convert("RGB"), (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from biomedclip.imaging import read_image
    from biomedclip.io_utils import atomic_open

    options = read_options_from_args(args, mode=None)
    cfg = _preprocess_config(args)
    record = read_image(args.file, options)
    views = record.images if args.no_crop else [model_view(im, cfg) for im in record.images]
    sheet = grid(views)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        sheet.save(f, format="PNG")
    meta = {k: v for k, v in record.metadata.items() if k != "items"}
    summary = {
        "file": args.file,
        "out": str(out),
        "images": len(views),
        "image_size": None if args.no_crop else cfg.image_size,
        "labels": [record.describe(i) for i in range(len(views))],
        "windows": [
            it.get("window") for it in record.metadata.get("items", []) if it.get("window")
        ][:1],
        "metadata": meta,
    }
    if args.json:
        print_json(summary)
    else:
        win = summary["windows"][0] if summary["windows"] else None
        win_text = (
            f", window C={win['center']:g} W={win['width']:g} ({win['source']})"
            if win and "center" in win
            else (f", {win['source']}" if win else "")
        )
        console().print(
            f"wrote {out} ({len(views)} image(s), {meta.get('format')}"
            f"{'' if args.no_crop else f', {cfg.image_size}px'}{win_text})"
        )
    return 0
