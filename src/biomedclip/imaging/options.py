"""What :func:`biomedclip.imaging.read_image` returns and the options that steer it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from biomedclip.errors import InputError
from biomedclip.imaging.constants import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS  # re-exported
from biomedclip.imaging.constants import FORMATS as FORMATS
from biomedclip.imaging.constants import PLANES as PLANES
from biomedclip.imaging.windowing import Window, parse_window


@dataclass
class ReadOptions:
    """How to turn a file into images. Every field has a sensible default.

    mode: ``"RGB"`` converts every image; ``None`` keeps 8-bit PIL modes (L, P, RGBA, CMYK, ...)
        as stored so the model's eval transform converts after resize/crop, like the reference.
    max_pixels: decoded pixels (or voxels) allowed per input; ``None`` disables the guard.
    window: a preset (``lung``, ``mediastinum``, ``bone``, ``brain``, ``abdomen``,
        ``soft-tissue``, ``liver``), ``"C,W"`` or ``(C, W)``; overrides the file's VOI. Applies to
        DICOM (after the modality LUT, e.g. in HU), NIfTI and 16-bit/float Pillow images.
    percentiles: low/high percentiles used when no window is given nor stored.
    frames: ``None`` (format default: middle DICOM frame, first page of TIFF/GIF), ``"first"``,
        ``"middle"``, ``"all"`` or a 0-based index.
    plane / slices: NIfTI slicing: ``slices`` evenly spaced slices (1 = the middle one).
    tile_size / level / magnification / tissue_fraction / max_tiles: whole-slide tiling.
    wsi: ``"tiles"`` (default) or ``"thumbnail"`` (one overview image of the slide).
    background: RGB colour to composite alpha onto; ``None`` drops alpha like the reference.
    format: force a reader (``pillow``, ``dicom``, ``nifti``, ``wsi``) instead of sniffing.
    draft: JPEG only: decode at the smallest DCT scale (1/2, 1/4 or 1/8; Pillow's ``draft``) that
        keeps both sides at least this many pixels; the exact resize follows. Much faster for
        large JPEGs and close to, but not equal to, a full decode. ``None`` (default) decodes
        every pixel.
    """

    mode: str | None = "RGB"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    window: str | tuple[float, float] | Window | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)
    frames: str | int | None = None
    plane: str = "axial"
    slices: int = 1
    tile_size: int = 224
    level: int | None = None
    magnification: float | None = None
    tissue_fraction: float = 0.5
    max_tiles: int | None = None
    wsi: str = "tiles"
    thumbnail_size: int = 1024
    background: tuple[int, int, int] | None = None
    format: str | None = None
    draft: int | None = None

    def __post_init__(self) -> None:
        self.window = parse_window(self.window)
        if (
            self.frames is not None
            and not isinstance(self.frames, int)
            and (str(self.frames) not in ("first", "middle", "all"))
        ):
            try:
                self.frames = int(str(self.frames))
            except ValueError as e:
                raise InputError(
                    f"frames {self.frames!r}: use first, middle, all or an index"
                ) from e
        if isinstance(self.frames, int) and self.frames < 0:
            raise InputError(f"frames {self.frames}: index must be >= 0")
        if self.plane not in PLANES:
            raise InputError(f"plane {self.plane!r}: use one of {', '.join(PLANES)}")
        if self.slices < 1:
            raise InputError("slices must be >= 1")
        if self.tile_size < 8:
            raise InputError("tile_size must be >= 8")
        if self.level is not None and self.magnification is not None:
            raise InputError("give a slide level or a magnification, not both")
        if self.magnification is not None and not self.magnification > 0:
            raise InputError("magnification must be > 0")
        if not 0.0 <= self.tissue_fraction <= 1.0:
            raise InputError("tissue_fraction must be within [0, 1]")
        if self.max_tiles is not None and self.max_tiles < 1:
            raise InputError("max_tiles must be >= 1")
        if self.wsi not in ("tiles", "thumbnail"):
            raise InputError("wsi must be 'tiles' or 'thumbnail'")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise InputError(f"percentiles {self.percentiles}: need 0 <= low < high <= 100")
        if self.draft is not None and self.draft < 1:
            raise InputError("draft must be >= 1 pixel (or None for a full decode)")
        if self.format is not None and self.format not in FORMATS:
            raise InputError(f"format {self.format!r}: use one of {', '.join(FORMATS)}")

    @property
    def window_obj(self) -> Window | None:
        return self.window if isinstance(self.window, Window) else None


@dataclass
class ImageRecord:
    """Decoded image(s) of one input plus what we know about them.

    ``metadata["format"]`` names the reader; ``metadata["items"][i]`` describes ``images[i]``
    (frame index, slice index and plane, or tile coordinates at level 0).
    """

    images: list[Image.Image]
    metadata: dict[str, Any] = field(default_factory=dict)

    def item(self, i: int) -> dict[str, Any]:
        items = self.metadata.get("items") or []
        return items[i] if i < len(items) else {}

    def describe(self, i: int) -> str:
        """A short label for ``images[i]``: ``frame 5``, ``axial 40``, ``tile x=224 y=0``."""
        it = self.item(i)
        if "tile" in it:
            return f"tile x={it['x']} y={it['y']}"
        if "slice" in it:
            return f"{it['plane']} {it['slice']}"
        if "frame" in it and len(self.images) > 1:
            return f"frame {it['frame']}"
        return ""
