"""A procedurally drawn captioned dataset: coloured shapes at positions, described in text.

Used to verify that training really learns (zero-shot accuracy on held-out drawings) and by the
``configs/tiny_cpu.yaml`` example, which needs no downloaded data. Samples are written as WebDataset
shards (``KEY.png`` + ``KEY.txt`` + ``KEY.json`` with the ``label``), the same layout as the PMC
pipeline's output.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from biomedclip.io_utils import add_tar_member, atomic_open, tar_writer
from biomedclip.tokenizer import Tokenizer

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
}
# Shapes that stay distinct at 32 px (a filled square, a hollow ring, a plus-shaped cross); the
# drawer also knows "circle" and "triangle".
SHAPES = ("square", "ring", "cross")
POSITIONS = {
    "top left": (0.35, 0.35),
    "top right": (0.65, 0.35),
    "bottom left": (0.35, 0.65),
    "bottom right": (0.65, 0.65),
    "center": (0.5, 0.5),
}
SIZES = {"small": 0.3, "large": 0.38}
CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} at the {position}",
    "this is an image of a {colour} {shape} in the {position}",
    "{size} {colour} {shape}, {position}",
    "a photo of a {colour} {shape} on the {position} of the image",
    "this is a photo of a {colour} {shape}",
)
LABELS = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
WORDS = sorted(
    {w for t in CAPTION_TEMPLATES for w in t.replace(",", " ").split() if "{" not in w}
    | set(COLOURS)
    | set(SHAPES)
    | set(SIZES)
    | {w for p in POSITIONS for w in p.split()}
    | {"this", "is", "photo", "of", "image", "an", "a", "presented", "in"}
)


@dataclass
class ShapeSample:
    image: Image.Image
    caption: str
    label: str
    meta: dict


def draw_sample(rng: np.random.Generator, size: int = 32) -> ShapeSample:
    """One random drawing and a caption describing its colour, shape, size and position."""
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    position = str(rng.choice(list(POSITIONS)))
    size_name = str(rng.choice(list(SIZES)))
    bg = (int(rng.integers(0, 60)),) * 3  # a neutral dark background: colour words mean the shape
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    cx, cy = POSITIONS[position]
    jitter = rng.uniform(-0.05, 0.05, 2)
    cx, cy = (cx + jitter[0]) * size, (cy + jitter[1]) * size
    r = SIZES[size_name] * size * rng.uniform(0.9, 1.1)
    fill = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in COLOURS[colour])
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, round(r / 3)))
    elif shape == "cross":
        w = max(1.5, r / 3)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    caption = template.format(size=size_name, colour=colour, shape=shape, position=position)
    meta = {"colour": colour, "shape": shape, "position": position, "size": size_name}
    return ShapeSample(img, caption, f"{colour} {shape}", meta)


def write_shards(
    out_dir: str | Path, n: int, prefix: str, seed: int, image_size: int = 32, per_shard: int = 1000
) -> list[Path]:
    """Write ``n`` drawings as ``{prefix}-000000.tar`` ... (atomically, shard by shard)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    paths = []
    for shard_i, start in enumerate(range(0, n, per_shard)):
        path = out_dir / f"{prefix}-{shard_i:06d}.tar"
        with atomic_open(path, "wb") as f, tar_writer(f) as tf:
            for i in range(start, min(n, start + per_shard)):
                s = draw_sample(rng, image_size)
                key = f"{prefix}{i:07d}"
                buf = io.BytesIO()
                s.image.save(buf, format="PNG")
                add_tar_member(tf, f"{key}.png", buf.getvalue())
                add_tar_member(tf, f"{key}.txt", s.caption.encode())
                add_tar_member(tf, f"{key}.json", json.dumps({"label": s.label, **s.meta}).encode())
        paths.append(path)
    return paths


def ensure_dataset(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    seed: int = 0,
    image_size: int = 32,
    per_shard: int = 1000,
) -> tuple[str, str]:
    """Write the train and val shards once (a ``done.json`` marker); return their glob patterns."""
    out_dir = Path(out_dir)
    marker = out_dir / "done.json"
    want = {
        "n_train": n_train,
        "n_val": n_val,
        "seed": seed,
        "image_size": image_size,
        "per_shard": per_shard,
    }
    if not (marker.is_file() and json.loads(marker.read_text()) == want):
        write_shards(out_dir, n_train, "train", seed, image_size, per_shard)
        write_shards(out_dir, n_val, "val", seed + 1_000_003, image_size, per_shard)
        with atomic_open(marker, "w") as f:
            f.write(json.dumps(want))
    return str(out_dir / "train-*.tar"), str(out_dir / "val-*.tar")


def shapes_tokenizer(context_length: int = 32) -> Tokenizer:
    """A small WordPiece vocabulary covering the captions and label prompts."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "."] + WORDS
    return Tokenizer.from_vocab(vocab, context_length=context_length)
