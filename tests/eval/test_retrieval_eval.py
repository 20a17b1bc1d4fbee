"""`evaluate_retrieval` / `biomedclip eval retrieval`: a synthetic set with known ranks end to end,
and the real MedICaT sample with the tiny model checked against a brute-force computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import biomedclip
from biomedclip.cli.main import main
from biomedclip.embedding import Encoder, EncoderSettings
from biomedclip.eval.pairs import Pair, read_pairs
from biomedclip.eval.retrieval_eval import evaluate_retrieval
from tests.conftest import shared_path

from .test_retrieval_metrics import numpy_metrics, numpy_ranks, planted


class LookupModel(torch.nn.Module):
    """Embeds image k (a grey level 10k) as row k of ``image_table`` and a caption of k+1 words as
    row k of ``text_table``: retrieval ranks are then known in advance."""

    def __init__(self, image_table: torch.Tensor, text_table: torch.Tensor):
        super().__init__()
        self.image_table, self.text_table = image_table, text_table
        self.config = type("Cfg", (), {"embed_dim": image_table.shape[1]})()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype

    def encode_image(self, pixels):
        return self.image_table[(pixels[:, 0] / 10).round().long()]

    def encode_text(self, input_ids, attention_mask=None):
        return self.text_table[attention_mask.sum(1) - 3]  # [CLS] + k+1 words + [SEP]


def grey_level(image: Image.Image) -> torch.Tensor:
    return torch.tensor([float(np.asarray(image.convert("L")).mean())])


def synthetic_pairs(tmp_path, n: int) -> list[Pair]:
    pairs = []
    for k in range(n):
        path = tmp_path / f"img{k}.png"
        Image.new("L", (8, 8), 10 * k).save(path)
        pairs.append(Pair(f"p{k}", path, " ".join(["red"] * (k + 1))))
    return pairs


def test_synthetic_known_ranks_end_to_end(tmp_path, tiny_tokenizer):
    n = 24
    images, texts, r = planted(n, seed=5)
    model = LookupModel(images, texts)
    pairs = synthetic_pairs(tmp_path, n)
    enc = Encoder(model, grey_level, tiny_tokenizer, EncoderSettings(batch_size=5))
    report = evaluate_retrieval(enc, pairs)
    assert report.n_pairs == n and not report.skipped
    assert report.ranks["text_to_image"] == (r + 1).tolist()  # the planted ranks, in pair order
    want = {
        **numpy_metrics(r, "text_to_image"),
        **numpy_metrics(numpy_ranks(images.numpy(), texts.numpy()), "image_to_text"),
    }
    for key, value in want.items():
        assert report.metrics[key] == pytest.approx(value), key
    assert report.ids == [p.id for p in pairs]


def test_unreadable_image_is_skipped_and_the_rest_stay_aligned(tmp_path, tiny_tokenizer):
    n = 12
    eye = torch.eye(n)
    pairs = synthetic_pairs(tmp_path, n)
    pairs[4].image.write_bytes(b"not an image")
    pairs[7] = Pair("p7", tmp_path / "missing.png", pairs[7].caption)
    enc = Encoder(LookupModel(eye, eye), grey_level, tiny_tokenizer, EncoderSettings(batch_size=3))
    report = evaluate_retrieval(enc, pairs)
    assert report.n_pairs == n - 2
    assert [s["id"] for s in report.skipped] == ["p4", "p7"]
    assert "missing.png" in report.skipped[1]["error"]
    assert report.metrics["image_to_text_R@1"] == 1.0 and report.metrics["text_to_image_R@1"] == 1.0


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return biomedclip.load(tiny_model_dir)


def test_medicat_sample_with_tiny_model_matches_brute_force(tiny):
    model, preprocess, tokenizer = tiny
    pairs = read_pairs(shared_path("pmc", "medicat", "sample.jsonl"))
    enc = Encoder(model, preprocess, tokenizer, EncoderSettings(batch_size=4))
    report = evaluate_retrieval(enc, pairs)
    assert report.n_pairs == 10 and not report.skipped
    with torch.inference_mode():
        pix = torch.stack([preprocess(biomedclip.load_image(p.image, mode=None)) for p in pairs])
        img = model.encode_image(pix).numpy()
        tb = tokenizer([p.caption for p in pairs], warn=False)
        txt = model.encode_text(tb.input_ids, tb.attention_mask).numpy()
    # a random tiny model's embeddings lie close together: the engine's batches of 4 and this
    # one batch may order two keys within float rounding of each other either way
    for name, queries, keys in (("image_to_text", img, txt), ("text_to_image", txt, img)):
        ranks = np.asarray(report.ranks[name])
        low, high = rank_bounds(queries, keys, tol=2e-6)
        assert ((low <= ranks) & (ranks <= high)).all(), (name, ranks, low, high)
        assert (low == high).sum() >= 7  # most ranks are not near-ties: the check has teeth
        for key, value in numpy_metrics(ranks - 1, name).items():
            assert report.metrics[key] == pytest.approx(value), key


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rank_bounds(queries: np.ndarray, keys: np.ndarray, tol: float) -> tuple[np.ndarray, ...]:
    """1-based rank of key i for query i, lowest and highest within ``tol`` of similarity."""
    s = unit(queries) @ unit(keys).T
    own = np.diag(s)[:, None]
    return 1 + (s > own + tol).sum(1), (s >= own - tol).sum(1)


def test_cli_eval_retrieval_on_medicat(capsys, tiny_model_dir, tmp_path):
    jsonl = shared_path("pmc", "medicat", "sample.jsonl")
    ranks = tmp_path / "ranks.json"
    code = main(
        [
            "eval",
            "retrieval",
            str(jsonl),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--workers",
            "1",
            "--ranks-out",
            str(ranks),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n_pairs"] == 10 and out["skipped"] == []
    keys = {
        f"{d}_{m}"
        for d in ("image_to_text", "text_to_image")
        for m in ("R@1", "R@5", "R@10", "mean_rank", "median_rank")
    }
    assert keys <= set(out["metrics"])
    assert out["metrics"]["image_to_text_R@10"] == 1.0  # 10 candidates: always within 10
    saved = json.loads(ranks.read_text())
    assert len(saved["ranks"]["ids"]) == 10
    assert np.mean(saved["ranks"]["image_to_text"]) == pytest.approx(
        out["metrics"]["image_to_text_mean_rank"]
    )

    code = main(
        [
            "eval",
            "retrieval",
            str(jsonl),
            "--model",
            str(tiny_model_dir),
            "--limit",
            "4",
            "--workers",
            "0",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "4 pairs" in text and "image -> text" in text


def test_cli_eval_retrieval_csv_with_bad_row(capsys, tiny_model_dir, tmp_path):
    medicat = read_pairs(shared_path("pmc", "medicat", "sample.jsonl"))
    rows = ["image,caption"] + [
        f'"{p.image}","{p.caption.replace(chr(34), "")}"' for p in medicat[:5]
    ]
    rows.append('broken.png,"a caption"')
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    code = main(
        [
            "eval",
            "retrieval",
            str(tmp_path / "pairs.csv"),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--workers",
            "0",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["n_pairs"] == 5 and out["skipped"][0]["id"] == "5"
    assert main(["eval", "retrieval", str(tmp_path / "nope.csv")]) == 2
