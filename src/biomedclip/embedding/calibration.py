"""The calibration set: real images and texts that int8 quantisation and ``--backend auto`` measure on.

Where it comes from, in order (see docs/cpu.md):

1. ``EncoderSettings.calibration`` / ``--calibration DIR``: the first :data:`MAX_IMAGES` image
   files under ``DIR`` (sorted, recursive) and, when ``DIR`` has ``*.txt`` files, their first
   :data:`MAX_TEXTS` non-empty lines as texts; a list of image paths works too;
2. the environment variable ``BIOMEDCLIP_CALIBRATION`` (the same forms);
3. for jobs that read images (``embed``, ``classify``), the job's own first image inputs;
4. nothing: then only a model already in the cache can be used (int8 and ``auto`` refuse with a
   message that names ``--calibration``).

Texts default to the package's own prompts (the paper's templates with the class names of its
Supp. Table 10), so text calibration always works offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from biomedclip.errors import ConfigError

MAX_IMAGES = 32
MIN_IMAGES = 4
MAX_TEXTS = 256
ENV = "BIOMEDCLIP_CALIBRATION"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".dcm")


@dataclass
class CalibrationSet:
    """Image paths and texts to calibrate and measure on, and where they came from."""

    images: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    description: str = "none"

    @property
    def has_images(self) -> bool:
        return len(self.images) >= MIN_IMAGES


#: Class names of the paper's zero-shot tasks (Supp. Table 10) and common modalities: with the
#: paper's templates, the offline text calibration set (kept here: ``embedding`` is below ``eval``).
CLASS_NAMES = (
    "lung adenocarcinoma",
    "benign lung",
    "lung squamous cell carcinoma",
    "colon adenocarcinoma",
    "benign colonic tissue",
    "normal lymph node",
    "lymph node metastasis",
    "tumor infiltrating",
    "lymphocytes",
    "normal lung",
    "lung opacity",
    "pneumonia",
    "chest X-ray",
    "brain MRI",
    "bone X-ray",
    "abdominal CT",
    "adenocarcinoma histopathology",
    "squamous cell carcinoma",
    "hematoxylin and eosin stained slide",
    "immunohistochemistry",
    "fundus photograph",
    "skin lesion dermoscopy",
    "ultrasound of the liver",
    "mammogram",
    "glioma",
)
TEMPLATES = ("this is an image of {}", "{} presented in image", "a photo of {}")
CAPTIONS = (
    "Histopathological examination shows a moderately differentiated adenocarcinoma with "
    "glandular formation and nuclear atypia (hematoxylin and eosin, original magnification x200).",
    "Contrast-enhanced axial CT of the chest demonstrating a spiculated mass in the right upper "
    "lobe with mediastinal lymphadenopathy.",
    "Frontal chest radiograph showing bilateral patchy airspace opacities and a small left "
    "pleural effusion.",
    "T2-weighted MRI of the brain reveals a heterogeneous, hyperintense lesion in the left "
    "temporal lobe with surrounding vasogenic edema.",
)


def default_prompts() -> list[str]:
    """Real zero-shot prompts (the paper's templates x :data:`CLASS_NAMES`) and a few
    figure-caption-length texts: offline, for text calibration."""
    out = [t.format(name) for name in CLASS_NAMES for t in TEMPLATES] + list(CAPTIONS)
    return out[:MAX_TEXTS]


def _images_under(directory: Path) -> list[str]:
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [str(p) for p in files[:MAX_IMAGES]]


def _texts_under(directory: Path) -> list[str]:
    lines: list[str] = []
    for p in sorted(directory.rglob("*.txt")):
        lines += [s.strip() for s in p.read_text(errors="replace").splitlines() if s.strip()]
    return lines[:MAX_TEXTS]


def resolve_calibration(
    spec: str | os.PathLike | Sequence[str] | None, job_images: Sequence[str] = ()
) -> CalibrationSet:
    """The calibration set of ``spec`` (a folder or image paths), else ``$BIOMEDCLIP_CALIBRATION``,
    else ``job_images`` (a job's first inputs); texts default to :func:`default_prompts`."""
    if isinstance(spec, CalibrationSet):
        return spec
    if spec is None or spec == "":
        spec = os.environ.get(ENV) or None
    images: list[str] = []
    texts: list[str] = []
    if isinstance(spec, (str, os.PathLike)):
        d = Path(spec)
        if not d.is_dir():
            raise ConfigError(f"--calibration {spec}: not a folder of images (and *.txt texts)")
        images, texts = _images_under(d), _texts_under(d)
        desc = f"{d}: first {len(images)} images (sorted)"
        if not images:
            raise ConfigError(f"--calibration {spec}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    elif spec is not None:
        images = [str(p) for p in spec][:MAX_IMAGES]
        desc = f"{len(images)} given images"
    else:
        images = [str(p) for p in job_images][:MAX_IMAGES]
        desc = f"the job's first {len(images)} images" if images else "no images"
    if texts:
        desc += f"; {len(texts)} texts from *.txt"
    else:
        texts = default_prompts()
        desc += f"; {len(texts)} bundled prompts (paper templates x class names, captions)"
    return CalibrationSet(images, texts, desc)


def calibration_pixels(cal: CalibrationSet, preprocess):
    """Preprocessed ``[N, 3, S, S]`` pixels of the set's readable images (at least
    :data:`MIN_IMAGES`, else a :class:`ConfigError` that names ``--calibration``)."""
    import torch

    from biomedclip.imaging import load_image

    pixels = []
    for path in cal.images:
        try:
            pixels.append(preprocess(load_image(path, mode=None)))
        except Exception:  # noqa: BLE001 - an unreadable calibration image is skipped
            continue
    if len(pixels) < MIN_IMAGES:
        raise ConfigError(
            f"int8 quantisation and --backend auto need at least {MIN_IMAGES} readable real "
            f"images to calibrate on the first time (got {len(pixels)} from {cal.description}): "
            "pass --calibration DIR (or set BIOMEDCLIP_CALIBRATION)"
        )
    return torch.stack(pixels)


def calibration_tokens(cal: CalibrationSet, tokenizer) -> list[tuple]:
    """One unpadded ``(input_ids [1, L], attention_mask [1, L])`` per text."""
    out = []
    for text in cal.texts:
        b = tokenizer([text], warn=False)
        out.append((b.input_ids, b.attention_mask))
    return out


def job_calibration(cfg, source=None):
    """``cfg`` (settings with ``calibration``) with ``calibration`` = the source's first image
    files, where a first build may need calibration and neither ``cfg.calibration`` nor
    ``$BIOMEDCLIP_CALIBRATION`` is set."""
    import dataclasses
    import itertools

    if not cfg.needs_calibration or cfg.calibration is not None or os.environ.get(ENV):
        return cfg
    if source is None or not getattr(source, "has_images", False):
        return cfg
    try:
        paths = [it.path for it in itertools.islice(source.items(), 4 * MAX_IMAGES) if it.path]
    except Exception:  # noqa: BLE001 - a source that cannot list cheaply calibrates elsewhere
        return cfg
    paths = [p for p in paths if os.path.isfile(p)][:MAX_IMAGES]
    if not paths:
        return cfg
    return dataclasses.replace(cfg, calibration=resolve_calibration(None, job_images=paths))
