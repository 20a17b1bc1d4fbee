"""The Ray engine on a local Ray instance gives the local engine's output."""

from __future__ import annotations

import numpy as np
import pytest

from biomedclip.embedding import EmbedConfig, embed_to_dataset, read_embeddings, sources

from .conftest import make_image

ray = pytest.importorskip("ray")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_engine_equals_local_engine(tiny, tiny_model_dir, tmp_path):
    from biomedclip.embedding.ray_engine import RayOptions

    model, pre, tok = tiny
    rows = ["id,path,caption,site"]
    for i in range(6):
        make_image(tmp_path / "im" / f"{i}.png", i, mode="L" if i % 3 == 0 else "RGB")
        rows.append(f"r{i},im/{i}.png,caption number {i} of a chest x ray,site{i % 2}")
    rows.append("r6,im/missing.png,text whose image is missing,site0")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    src = sources.table(tmp_path / "pairs.csv")
    cfg = EmbedConfig(batch_size=4, modality="both", num_workers=0, progress=False)
    local, dist = tmp_path / "local", tmp_path / "ray"
    s1 = embed_to_dataset(model, pre, tok, src, local, cfg, model_source=str(tiny_model_dir))
    s2 = embed_to_dataset(
        model,
        pre,
        tok,
        src,
        dist,
        cfg,
        model_source=str(tiny_model_dir),
        engine="ray",
        ray_options=RayOptions(
            num_actors=1, init_kwargs={"num_cpus": 2, "object_store_memory": 200 * 2**20}
        ),
    )
    assert not ray.is_initialized()  # the engine shut down the instance it started
    assert (s1.images, s1.texts, s1.failed) == (s2.images, s2.texts, s2.failed) == (6, 7, 1)
    for modality in ("image", "text"):
        a_ids, a, a_tab = read_embeddings(local, modality=modality)
        b_ids, b, b_tab = read_embeddings(dist, modality=modality)
        assert sorted(a_ids) == sorted(b_ids)
        order = [b_ids.index(i) for i in a_ids]
        np.testing.assert_allclose(a, b[order], atol=1e-6)
        assert a_tab.column("site").to_pylist() == [b_tab.column("site")[j].as_py() for j in order]
    assert (local / "errors.jsonl").read_text() == (dist / "errors.jsonl").read_text()
