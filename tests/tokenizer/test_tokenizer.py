"""Token ids equal open_clip's HFTokenizer (before its padding) on a few hundred varied texts."""

from __future__ import annotations

import json
import random
import re
import warnings

import pytest
import torch
from benchmarks._reference import reference_dir

from biomedclip.errors import TokenizerError
from biomedclip.tokenizer import Tokenizer, clean_text
from tests.conftest import shared_path

SPECIAL = [
    "",  # handled separately (refused by default)
    "   leading and trailing   ",
    "H&amp;E stain &lt;x400&gt; &amp;amp; double-escaped",
    "naÃ¯ve mojibake cafÃ©",
    "Ünïcödé Straße — en–dash “quotes” ‘single’ … ellipsis",
    "Greek αβγ δ-catenin, μm, ±5%, ≥ 3 cm, 37 °C",
    "中文 字符 mixed with English",
    "emoji 🫁🧠 in a caption",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2009thin",
    "ALL CAPS TITLE: CT ABDOMEN/PELVIS W/ CONTRAST",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "IL-6/STAT3, p53(+), Ki-67 (>20%), HER2/neu 3+",
    "zero\u200bwidth\u200cjoiners\u200d",
    "Control characters \x07 bell \x1b escape",
]


def _texts() -> list[str]:
    texts = list(SPECIAL[1:])
    vqa = json.loads(shared_path("vqa_rad", "testset.json").read_text())
    slake = json.loads(shared_path("slake", "test.json").read_text())
    rng = random.Random(0)
    texts += [q["question"] for q in rng.sample(vqa, 80)] + [
        q["answer"] for q in rng.sample(vqa, 20)
    ]
    texts += [q["question"] for q in rng.sample(slake, 60) if q.get("q_lang") == "en"]
    for line in shared_path("pmc", "medicat", "sample.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts.append(rec["s2_caption"])
        texts += (rec.get("s2orc_references") or [])[:2]
    # captions straight from JATS (inline markup stripped crudely: tokenisation is what is tested)
    for nxml in sorted(shared_path("pmc", "nxml").glob("*.nxml")):
        raw = nxml.read_text(encoding="utf-8")
        for cap in re.findall(r"<caption>(.*?)</caption>", raw, flags=re.S)[:4]:
            texts.append(re.sub(r"<[^>]+>", " ", cap))
        paras = re.findall(r"<p>(.*?)</p>", raw, flags=re.S)
        texts += [re.sub(r"<[^>]+>", " ", p) for p in paras[:6]]
    long_text = " ".join(texts[-30:])  # well over 256 tokens
    texts += [long_text, long_text.upper(), "word " * 400]
    return texts


@pytest.fixture(scope="module")
def reference_tokenizer(hub_dir, tmp_path_factory):
    import open_clip

    d = reference_dir(hub_dir, tmp_path_factory.mktemp("ref_tok"))
    return open_clip.get_tokenizer(f"local-dir:{d}")


def test_ids_equal_reference(released_tokenizer, reference_tokenizer):
    texts = _texts()
    assert len(texts) >= 200
    ref = reference_tokenizer(texts)  # [N, 256], zero-padded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = released_tokenizer(texts)
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1  # one warning per call
    assert sum(ours.truncated) >= 3
    for i, text in enumerate(texts):
        n = ours.lengths[i]
        assert ours.input_ids[i, :n].tolist() == ref[i, :n].tolist(), text
        assert (ref[i, n:] == 0).all(), f"reference has more tokens for {text!r}"
        assert ours.attention_mask[i].sum() == n
        assert ours.input_ids[i, n - 1] == released_tokenizer.sep_id


def test_pads_to_longest_and_masks(released_tokenizer):
    b = released_tokenizer(["chest x-ray", "a photo of an adenocarcinoma histopathology slide"])
    assert b.input_ids.shape[1] == max(b.lengths) < 32
    assert b.attention_mask.tolist()[0] == [1] * b.lengths[0] + [0] * (
        b.input_ids.shape[1] - b.lengths[0]
    )
    assert b.input_ids[0, b.lengths[0] :].eq(released_tokenizer.pad_id).all()
    fixed = released_tokenizer(["chest x-ray"], padding="max_length")
    assert fixed.input_ids.shape == (1, 256)


def test_truncation_keeps_sep(released_tokenizer):
    with pytest.warns(UserWarning, match="truncated"):
        b = released_tokenizer(["lung " * 600])
    assert b.input_ids.shape == (1, 256)
    assert b.input_ids[0, 0] == released_tokenizer.cls_id
    assert b.input_ids[0, -1] == released_tokenizer.sep_id
    assert b.truncated == [True]
    assert released_tokenizer.count_tokens(["lung " * 600])[0] == 602


def test_empty_text_refused_naming_it(released_tokenizer):
    with pytest.raises(TokenizerError, match="#1"):
        released_tokenizer(["fine", "   "])
    b = released_tokenizer([""], allow_empty=True)
    assert b.input_ids.tolist() == [[released_tokenizer.cls_id, released_tokenizer.sep_id]]


def test_non_string_refused(released_tokenizer):
    with pytest.raises(TokenizerError, match="not str"):
        released_tokenizer(["ok", None])


def test_clean_text():
    assert clean_text("  H&amp;amp;E\n stain ") == "H&E stain"
    assert clean_text("cafÃ©") == "café"


def test_vocab_only_equals_tokenizer_json(hub_dir, released_tokenizer):
    """A model directory with only vocab.txt tokenises identically to tokenizer.json."""
    from_vocab = Tokenizer.from_vocab(hub_dir / "vocab.txt")
    texts = _texts()[:120]
    a, b = released_tokenizer(texts, warn=False), from_vocab(texts, warn=False)
    assert torch.equal(a.input_ids, b.input_ids)


def test_save_and_reload(tmp_path, released_tokenizer):
    released_tokenizer.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    texts = ["Is the liver enlarged?", "T2-weighted MRI of the brain"]
    assert torch.equal(released_tokenizer(texts).input_ids, again(texts).input_ids)
    from transformers import AutoTokenizer  # the files also load in transformers

    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf(texts[0])["input_ids"] == released_tokenizer(texts[:1]).input_ids[0].tolist()


def test_missing_files_error(tmp_path):
    with pytest.raises(TokenizerError, match=str(tmp_path)):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="not found"):
        Tokenizer.from_vocab(tmp_path / "nope.txt")
