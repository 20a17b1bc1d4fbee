"""`--engine ray` on a local Ray instance gives the same shards as the local engine."""

from __future__ import annotations

import pytest
from pmc_helpers import shard_bytes, small_config

from biomedclip.pmc.pipeline import Pipeline

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_engine_matches_local(
    local_ray, mirror_factory, real_packages, tokenizer_dir, tmp_path
):
    mirror = mirror_factory(real_packages)
    local = Pipeline(small_config(tmp_path / "local", tokenizer_dir, mirror=mirror.url, workers=1))
    local_report = local.build()
    on_ray = Pipeline(
        small_config(tmp_path / "ray", tokenizer_dir, mirror=mirror.url, engine="ray", workers=2)
    )
    ray_report = on_ray.build()
    assert ray_report["run"]["paired"] == 8 and ray_report["fetch"]["downloaded"] == 8
    assert ray_report["write"]["samples"] == local_report["write"]["samples"] == 17
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local")
