"""Decoding ahead of the model (a thread on small machines) and the opt-in fast JPEG decode."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from biomedclip.cli.main import main as cli_main
from biomedclip.embedding import EmbedConfig, embed_images, embed_to_dataset, read_manifest, sources
from biomedclip.embedding.encoder import Encoder, EncoderSettings
from biomedclip.embedding.prefetch import prefetch
from biomedclip.errors import InputError
from tests.conftest import shared_path
from tests.imaging.helpers import save_rotated_jpeg


def test_prefetch_keeps_order_and_runs_in_another_thread():
    seen = []

    def produce():
        for i in range(10):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(produce(), depth=2)) == list(range(10))
    assert set(seen) == {"biomedclip-decode"}


def test_prefetch_reraises_after_the_items_before_the_error():
    def produce():
        yield 1
        yield 2
        raise ValueError("bad shard")

    got = []
    with pytest.raises(ValueError, match="bad shard"):
        for x in prefetch(produce()):
            got.append(x)
    assert got == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    it = prefetch(produce(), depth=2)
    assert next(it) == 0
    it.close()
    n = len(produced)
    assert n <= 4  # the consumed item, the queue's two slots, one blocked in put
    assert not any(t.name == "biomedclip-decode" for t in threading.enumerate())


def test_engine_decodes_in_a_thread_without_worker_processes(tiny, image_dir):
    model, pre, _ = tiny
    threads = set()

    def recording(im):
        threads.add(threading.current_thread().name)
        return pre(im)

    paths = sorted(p for p in image_dir.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg"))
    cfg = EmbedConfig(progress=False, num_workers=0, batch_size=2)
    res = embed_images(model, recording, paths, cfg)
    assert threads == {"biomedclip-decode"}
    assert len(res.ids) == 5 and len(res.failures) == 1  # the broken file, reported as before
    direct = embed_images(model, pre, [p for p in paths if p.name != "broken.jpg"], cfg)
    np.testing.assert_allclose(res.embeddings, direct.embeddings, atol=1e-6)  # other batching


@pytest.fixture()
def large_jpegs(tmp_path):
    """Three real SLAKE / VQA-RAD scans (>= 512 px) plus one JPEG with an EXIF rotation."""
    real = sorted(shared_path("slake", "imgs").glob("*/source.jpg"))[:3]
    real += sorted(shared_path("vqa_rad", "images").glob("*.jpg"))[:1]
    with Image.open(real[0]) as im:
        rotated = save_rotated_jpeg(im.resize((700, 420)), tmp_path / "rotated.jpg", quality=92)
    return [*real, rotated]


def test_fast_decode_is_close_to_exact_and_recorded(tiny, large_jpegs, tmp_path):
    model, pre, tok = tiny
    exact = Encoder(model, settings=EncoderSettings(num_workers=0))
    fast = Encoder(model, settings=EncoderSettings(num_workers=0, fast_decode=True))
    assert exact.read.draft is None
    assert fast.read.draft == 2 * model.config.preprocess.image_size
    assert fast.settings.label == "fp32+fast-decode"
    from biomedclip.eval.features import preprocessing_label

    assert preprocessing_label(fast) != preprocessing_label(exact)  # eval caches kept apart
    a, b = exact.encode_images(large_jpegs), fast.encode_images(large_jpegs)
    assert not a.failures and not b.failures
    cos = (a.embeddings * b.embeddings).sum(1)
    assert cos.min() > 0.99, cos  # tiny random model; the full model's cosine is benchmarked
    assert not np.array_equal(a.embeddings, b.embeddings)  # really decoded differently
    # the dataset records it, and an exact run is not appended to fast-decoded rows
    out = tmp_path / "emb"
    cfg = EmbedConfig(progress=False, num_workers=0, fast_decode=True)
    embed_to_dataset(model, pre, tok, sources.image_files(large_jpegs), out, cfg, "tiny")
    assert read_manifest(out)["precision"] == "fp32+fast-decode"
    with pytest.raises(InputError, match="precision"):
        embed_to_dataset(
            model,
            pre,
            tok,
            sources.image_files(large_jpegs),
            out,
            EmbedConfig(progress=False, num_workers=0),
            "tiny",
        )


def test_cli_fast_decode_flag(tiny_model_dir, large_jpegs, tmp_path, capsys):
    from biomedclip.cli import common

    parser = common.argparse.ArgumentParser()
    common.add_model_args(parser)
    args = parser.parse_args(["--fast-decode"])
    assert common.settings_from_args(args).fast_decode
    assert not common.settings_from_args(parser.parse_args([])).fast_decode
    out = tmp_path / "emb"
    rc = cli_main(
        ["embed", *map(str, large_jpegs), "--model", str(tiny_model_dir), "--out", str(out)]
        + ["--fast-decode", "--workers", "0"]
    )
    assert rc in (0, None)
    assert read_manifest(out)["precision"] == "fp32+fast-decode"
