"""The torch-free runner's preprocessing and tokenizer equal the package's (fast, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from biomedclip.onnx.preprocess import preprocess_image
from biomedclip.onnx.text import TextTokenizer
from biomedclip.transforms import eval_transform

HAIRY_TEXTS = [
    "chest X-ray",
    "  Squamous   cell\tcarcinoma\n",
    "T1-weighted MRI &amp;amp; contrast &lt;5 mm&gt;",
    "cafÃ© au lait spots",  # mojibake: ftfy repairs it
    "Ki-67 (MIB-1) index: 35%, pT2N0M0",
    "über-große Läsion 肺",
    "word " * 300,  # longer than the context length: truncated, [SEP] kept
]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (231, 397, 3), dtype=np.uint8), "RGB")
    return [
        rgb,  # landscape, odd margins
        rgb.transpose(Image.Transpose.TRANSPOSE),  # portrait
        rgb.resize((224, 224)),  # already the size: no resize
        rgb.resize((225, 300)),  # crop offsets with round-half-to-even
        rgb.convert("L"),
        rgb.convert("RGBA"),
        rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        Image.fromarray((rng.random((300, 260)) * 65535).astype(np.uint16)),  # 16-bit
        Image.fromarray(rng.random((260, 300)).astype(np.float32), "F"),
        rgb.resize((40, 30)),  # upsampled
    ]


@pytest.mark.parametrize("index", range(10))
def test_preprocess_is_bit_identical_to_eval_transform(index):
    image = _images()[index]
    ours = preprocess_image(image)
    want = eval_transform()(image).numpy()
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    assert np.array_equal(ours, want), np.abs(ours - want).max()


def test_preprocess_on_the_example_images(example_images):
    from biomedclip.imaging import load_image

    transform = eval_transform()
    for path in example_images:
        image = load_image(path, mode=None)
        assert np.array_equal(preprocess_image(image), transform(image).numpy()), path.name


def test_token_ids_equal_the_package_tokenizer(released_tokenizer, hub_dir):
    tok = TextTokenizer(hub_dir / "tokenizer.json", context_length=256)
    ids, mask, truncated = tok(HAIRY_TEXTS)
    with pytest.warns(UserWarning, match="truncated"):
        want = released_tokenizer(HAIRY_TEXTS)
    assert np.array_equal(ids, want.input_ids.numpy())
    assert np.array_equal(mask, want.attention_mask.numpy())
    assert truncated == want.truncated == [False] * 6 + [True]
    assert ids.dtype == np.int64 and ids[-1, 255] == released_tokenizer.sep_id


def test_tokenizer_errors_name_the_input(hub_dir, tmp_path):
    from biomedclip.errors import TokenizerError

    tok = TextTokenizer(hub_dir / "tokenizer.json")
    with pytest.raises(TokenizerError, match="#1"):
        tok(["fine", " \n "])
    with pytest.raises(TokenizerError, match="not str"):
        tok(["fine", 3])
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(TokenizerError, match="bad.json"):
        TextTokenizer(tmp_path / "bad.json")


def test_preprocess_refuses_non_images():
    with pytest.raises(TypeError, match="PIL"):
        preprocess_image(torch.zeros(3, 10, 10))
