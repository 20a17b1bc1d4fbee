"""Heatmaps over a whole slide: one score per patch (cosine similarity to a text, or ABMIL
attention) painted at the patch's level-0 square, blended over the slide's thumbnail, with a
colour-bar legend under it. Areas without patches (background, excluded tissue) stay unpainted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from biomedclip.errors import InputError
from biomedclip.slide.features_file import SlideFeatures

SOURCE_ATTRS = ("slide_path", "source", "slide")  # where a feature file names its slide
LEGEND_H = 46


def patch_size_level0(sf: SlideFeatures) -> int:
    """The patch side in level-0 pixels: the file's attribute, else the grid's smallest step."""
    v = sf.attrs.get("patch_size_level0")
    if v:
        return int(v)
    steps = [np.diff(np.unique(sf.coords[:, a])) for a in (0, 1)]
    steps = np.concatenate([s[s > 0] for s in steps])
    return int(steps.min()) if len(steps) else 256


def slide_file(sf: SlideFeatures, features_path: str | Path | None = None) -> Path | None:
    """The slide a feature file was made from (an attribute; relative to the file), if present."""
    for key in SOURCE_ATTRS:
        v = sf.attrs.get(key)
        if isinstance(v, str) and v:
            p = Path(v)
            if not p.is_absolute() and features_path is not None:
                p = Path(features_path).parent / p
            if p.is_file():
                return p
    return None


def text_scores(sf: SlideFeatures, text_embedding: np.ndarray) -> np.ndarray:
    """Cosine similarity ``[N]`` of each patch to one text embedding."""
    from biomedclip.slide.zeroshot import patch_similarities

    return patch_similarities(sf.features, np.asarray(text_embedding).reshape(1, -1))[:, 0]


@dataclass
class Heatmap:
    image: Image.Image  # thumbnail + blended scores + legend
    vmin: float
    vmax: float
    scale: float  # thumbnail pixels per level-0 pixel


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def score_canvas(
    scores: np.ndarray, coords: np.ndarray, patch0: int, size: tuple[int, int], scale: float
) -> np.ndarray:
    """``[h, w]`` float map (NaN where no patch) of the scores at thumbnail scale."""
    w, h = size
    canvas = np.full((h, w), np.nan, np.float32)
    side = max(1, int(round(patch0 * scale)))
    for (x, y), s in zip(coords, scores):
        x0, y0 = int(x * scale), int(y * scale)
        canvas[max(0, y0) : min(h, y0 + side), max(0, x0) : min(w, x0 + side)] = s
    return canvas


def legend(width: int, title: str, vmin: float, vmax: float, cmap: str) -> Image.Image:
    from matplotlib import colormaps

    img = Image.new("RGB", (width, LEGEND_H), "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    bar_w = max(64, min(256, width - 140))
    x0, y0 = 64, 20
    ramp = (colormaps[cmap](np.linspace(0, 1, bar_w))[:, :3] * 255).astype(np.uint8)
    img.paste(Image.fromarray(np.repeat(ramp[None], 14, 0), "RGB"), (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + bar_w, y0 + 14], outline="black")
    draw.text((4, 2), title[:120], fill="black", font=font)
    draw.text((4, y0), f"{vmin:.3f}", fill="black", font=font)
    draw.text((x0 + bar_w + 6, y0), f"{vmax:.3f}", fill="black", font=font)
    return img


def render_heatmap(
    scores: np.ndarray,
    coords: np.ndarray,
    patch0: int,
    dimensions: tuple[int, int],
    thumbnail: Image.Image | None = None,
    title: str = "",
    max_side: int = 1024,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Heatmap:
    """The scores painted at their patches over ``thumbnail`` (a plain grey canvas of the slide's
    shape without one), colours min-max scaled over the slide's patches, plus the legend."""
    from matplotlib import colormaps

    scores = np.asarray(scores, np.float32)
    if len(scores) != len(coords):
        raise InputError(f"{len(scores)} scores for {len(coords)} patches")
    W, H = dimensions
    if thumbnail is None:
        s = max_side / max(W, H)
        thumbnail = Image.new("RGB", (max(1, round(W * s)), max(1, round(H * s))), (235, 235, 235))
    base = thumbnail.convert("RGB")
    scale = base.width / W
    vmin, vmax = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)
    canvas = score_canvas(scores, coords, patch0, base.size, scale)
    painted = np.isfinite(canvas)
    norm = np.where(painted, (canvas - vmin) / (vmax - vmin) if vmax > vmin else 0.5, 0.0)
    colour = (colormaps[cmap](norm)[..., :3] * 255).astype(np.float32)
    rgb = np.asarray(base, np.float32)
    a = alpha * painted[..., None]
    blended = Image.fromarray((rgb * (1 - a) + colour * a).round().astype(np.uint8), "RGB")
    out = Image.new("RGB", (blended.width, blended.height + LEGEND_H), "white")
    out.paste(blended, (0, 0))
    out.paste(legend(max(blended.width, 200), title, vmin, vmax, cmap), (0, blended.height))
    return Heatmap(out, vmin, vmax, scale)


def slide_heatmap(
    sf: SlideFeatures,
    scores: np.ndarray,
    slide_path: str | Path | None = None,
    title: str = "",
    max_side: int = 1024,
    alpha: float = 0.5,
) -> Heatmap:
    """Render ``scores`` over the slide's thumbnail (read through :func:`imaging.open_slide`);
    without a slide file, over a grey canvas sized from the file's attributes or coordinates."""
    patch0 = patch_size_level0(sf)
    thumb, dims = None, None
    if slide_path is not None:
        from biomedclip.imaging.wsi import open_slide

        with open_slide(slide_path) as slide:
            dims = slide.dimensions
            thumb = slide.thumbnail(max_side)
    if dims is None:
        d = sf.attrs.get("dimensions") or sf.attrs.get("slide_dimensions")
        if isinstance(d, (list, tuple)) and len(d) == 2:
            dims = (int(d[0]), int(d[1]))
        else:
            dims = (int(sf.coords[:, 0].max()) + patch0, int(sf.coords[:, 1].max()) + patch0)
    return render_heatmap(scores, sf.coords, patch0, dims, thumb, title, max_side, alpha)
