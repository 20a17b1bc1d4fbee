"""Issue 18: the PubMedBERT tokenizer ships inside the package (offline, no hub cache needed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from biomedclip.tokenizer import BUNDLED_DIR, BUNDLED_SHA256, Tokenizer
from tests.tokenizer.test_tokenizer import _texts

SRC = Path(__file__).resolve().parents[2] / "src"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bundled_files_are_the_recorded_ones():
    assert sorted(p.name for p in BUNDLED_DIR.iterdir()) == sorted([*BUNDLED_SHA256, "NOTICE.md"])
    for name, digest in BUNDLED_SHA256.items():
        assert sha256(BUNDLED_DIR / name) == digest, name
    assert sum((BUNDLED_DIR / n).stat().st_size for n in BUNDLED_SHA256) < 1_000_000


def test_bundled_files_equal_the_released_ones(hub_dir):
    """The recorded sha256 are those of the released hub files (../shared/data/biomedclip_hub)."""
    for name, digest in BUNDLED_SHA256.items():
        assert sha256(hub_dir / name) == digest, f"{name} differs from the released file"


def test_bundled_tokenizes_like_the_released_one(released_tokenizer):
    """Identical ids, lengths, masks and truncation on real captions, questions and edge cases."""
    bundled = Tokenizer.bundled()
    texts = _texts()
    assert len(texts) >= 200
    ours, ref = bundled(texts, warn=False), released_tokenizer(texts, warn=False)
    assert ours.input_ids.tolist() == ref.input_ids.tolist()
    assert ours.attention_mask.tolist() == ref.attention_mask.tolist()
    assert list(ours.truncated) == list(ref.truncated)
    assert bundled.vocab_size == released_tokenizer.vocab_size
    assert Tokenizer.from_vocab(BUNDLED_DIR / "vocab.txt").encode(texts) == bundled.encode(texts)


def test_load_tokenizer_uses_the_bundled_files_offline(tmp_path):
    """``HF_HUB_OFFLINE=1`` with an empty ``HF_HOME``: no download, no cache, still a tokenizer."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import biomedclip\n"
        "tok = biomedclip.load_tokenizer()\n"
        "print(tok.encode(['chest X-ray'])[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    ids = eval(out.stdout.strip().splitlines()[-1])  # a printed list of ints
    assert ids[0] == 2 and ids[-1] == 3 and len(ids) > 3, ids


def test_a_model_directory_without_tokenizer_files_gets_the_bundled_one(tmp_path):
    from biomedclip.factory import load_tokenizer

    tok = load_tokenizer(tmp_path, context_length=77)
    assert tok.context_length == 77
    assert tok.encode(["brain MRI"]) == Tokenizer.bundled().encode(["brain MRI"])


def test_a_model_directory_with_its_own_files_keeps_them(tmp_path, tiny_tokenizer):
    from biomedclip.factory import load_tokenizer

    tiny_tokenizer.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path).vocab_size == tiny_tokenizer.vocab_size


@pytest.mark.parametrize("name", [*sorted(BUNDLED_SHA256), "NOTICE.md"])
def test_bundled_files_are_package_data(name):
    """pyproject.toml ships them (tests/packaging checks the built wheel and sdist)."""
    import tomllib

    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["biomedclip"]
    rel = (BUNDLED_DIR / name).relative_to(SRC / "biomedclip").as_posix()
    assert any(Path(rel).match(p) for p in patterns), (rel, patterns)
