"""Real biomedical benchmark texts: short prompts and caption-length passages from ../shared/data."""

from __future__ import annotations

import html
import json
import random
import re

from _reference import SHARED

LABELS = (
    "chest x-ray",
    "brain mri",
    "bone x-ray",
    "abdominal ct",
    "knee mri",
    "lung ct",
    "head ct",
    "adenocarcinoma histopathology",
    "squamous cell carcinoma",
    "benign lung tissue",
    "pleural effusion",
    "pneumothorax",
    "cardiomegaly",
    "glioma",
    "meningioma",
    "liver lesion",
    "kidney stone",
    "fractured femur",
    "retinal fundus photograph",
    "skin lesion dermoscopy",
    "mammogram",
    "echocardiogram",
    "h&e stained slide",
    "immunohistochemistry",
    "ultrasound",
    "pet scan",
    "colonoscopy image",
    "electron micrograph",
    "bar chart",
    "line graph",
    "brain tumor",
    "normal chest radiograph",
)
TEMPLATES = ("this is a photo of {}", "a {}", "an image of {}", "{} presented in image")


def short_prompts(tokenizer, n: int = 128, max_tokens: int = 16) -> list[str]:
    """``n`` distinct zero-shot prompts of at most ``max_tokens`` tokens (with [CLS]/[SEP])."""
    prompts = [t.format(label) for label in LABELS for t in TEMPLATES]
    counts = tokenizer.count_tokens(prompts)
    prompts = [p for p, c in zip(prompts, counts) if c <= max_tokens]
    if len(prompts) < n:
        raise RuntimeError(f"only {len(prompts)} prompts of <= {max_tokens} tokens")
    return random.Random(0).sample(prompts, n)


def _corpus_words() -> list[str]:
    texts = []
    for line in (SHARED / "pmc" / "medicat" / "sample.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts.append(rec.get("s2_caption") or "")
        texts.extend(rec.get("s2orc_references") or [])
    for path in sorted((SHARED / "pmc" / "nxml").glob("*.nxml")):
        xml = path.read_text(errors="replace")
        for para in re.findall(r"<p>(.*?)</p>", xml, flags=re.S):
            texts.append(html.unescape(re.sub(r"<[^>]+>", " ", para)))
    return " ".join(texts).split()


def caption_texts(tokenizer, n: int = 128, lo: int = 60, hi: int = 120) -> list[str]:
    """``n`` passages of real PMC text, each ``lo``..``hi`` tokens long (uniformly spread)."""
    words = _corpus_words()
    rng = random.Random(0)
    out: list[str] = []
    while len(out) < n:
        target = rng.randint(lo, hi)
        start = rng.randrange(0, len(words) - 200)
        k = max(10, target // 2)
        text = " ".join(words[start : start + k])
        count = tokenizer.count_tokens([text])[0]
        while count < target and k < 200:
            k += 1
            text = " ".join(words[start : start + k])
            count = tokenizer.count_tokens([text])[0]
        while count > target and k > 5:
            k -= 1
            text = " ".join(words[start : start + k])
            count = tokenizer.count_tokens([text])[0]
        if lo <= count <= hi:
            out.append(text)
    return out
