"""Fixtures for the embedding tests: a loaded tiny model and small synthetic inputs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """``(model, preprocess, tokenizer)`` of the tiny random model."""
    import biomedclip

    return biomedclip.load(str(tiny_model_dir))


def make_image(path: Path, seed: int, size=(40, 30), mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    """A folder tree: 5 images (png/jpg, nested, one grayscale), a text file and a corrupt .jpg."""
    root = tmp_path / "imgs"
    make_image(root / "a.png", 0)
    make_image(root / "b.jpg", 1)
    make_image(root / "sub" / "c.png", 2, mode="L")
    make_image(root / "sub" / "deeper" / "d.jpeg", 3, size=(64, 20))
    make_image(root / "e.png", 4)
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def write_shard(
    path: Path, samples: list[tuple[str, bytes | None, str | None, dict | None]]
) -> Path:
    """A WebDataset tar: KEY.jpg/png (bytes), KEY.txt, KEY.json as the PMC pipeline writes them."""
    with tarfile.open(path, "w") as tar:
        for key, img, text, meta in samples:
            members = []
            if img is not None:
                members.append((f"{key}.png", img))
            if text is not None:
                members.append((f"{key}.txt", text.encode()))
            if meta is not None:
                members.append((f"{key}.json", json.dumps(meta).encode()))
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 36, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
