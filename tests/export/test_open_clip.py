"""``export open_clip`` at the full architecture: open_clip loads it strictly and agrees."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tests.export.conftest import assert_equal_embeddings, export_once

open_clip = pytest.importorskip("open_clip")
pytestmark = pytest.mark.slow
COMMIT = "0" * 40
N_PROMPTS = 16  # open_clip pads every prompt to 256 tokens


@pytest.fixture(scope="module")
def offline_hub(hub_dir, tmp_path_factory):
    """A hub cache holding only the text model's ``config.json`` (what open_clip reads from the
    hub for the BERT architecture), used offline: the state a user's machine is in after a first
    use of BiomedCLIP."""
    import huggingface_hub.constants as hub_constants

    from biomedclip.config import TEXT_MODEL_IDS

    cache = tmp_path_factory.mktemp("hub_cache")
    repo = cache / ("models--" + TEXT_MODEL_IDS[0].replace("/", "--"))
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copy(hub_dir / "biomedbert_config.json", repo / "snapshots" / COMMIT / "config.json")
    mp = pytest.MonkeyPatch()
    mp.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def oc_export(tmp_path_factory, full_model, offline_hub):
    return export_once(tmp_path_factory, "open_clip", full_model)


def test_open_clip_loads_strictly_and_agrees(oc_export, example_pils, prompts, reference):
    d = oc_export.directory
    config = json.loads((d / "open_clip_config.json").read_text())
    assert {"hf_proj_type", "hf_pooler_type"} <= config["model_cfg"]["text_cfg"].keys()
    manifest = oc_export.manifest
    assert manifest["parity"]["biomedclip_reload"]["bit_exact"]
    assert manifest["parity"]["open_clip"]["checked"], manifest["parity"]["open_clip"]
    assert manifest["parity"]["open_clip"]["image"]["max_abs_diff"] <= 1e-5

    # open_clip's own loader: create_model_and_transforms loads the folder's weights with strict
    # key matching; loading them again by hand shows the key sets are identical.
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{d}")
    from safetensors.torch import load_file

    state = load_file(d / "open_clip_model.safetensors")
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    with torch.inference_mode():
        image = model.encode_image(torch.stack([preprocess(im) for im in example_pils]))
        text = model.encode_text(tokenizer(prompts[:N_PROMPTS]))  # padded to 256 tokens: slow
    assert_equal_embeddings(reference["images"], image.numpy())
    assert_equal_embeddings(reference["texts"][:N_PROMPTS], text.numpy())


def test_old_spelling_for_old_open_clip(full_model):
    """Each open_clip release accepts one spelling: the export writes either on request."""
    from open_clip.model import CLIPTextCfg

    from biomedclip.checkpoint.save import open_clip_config
    from biomedclip.config import ModelConfig
    from biomedclip.errors import ConfigError

    new = open_clip_config(full_model.config, "new")["model_cfg"]["text_cfg"]
    old = open_clip_config(full_model.config, "old")["model_cfg"]["text_cfg"]
    assert (old["proj"], old["pooler_type"]) == (new["hf_proj_type"], new["hf_pooler_type"])
    assert "hf_proj_type" not in old and "proj" not in new
    CLIPTextCfg(**new)  # the installed (>= 2.23) release takes the new spelling
    with pytest.raises(TypeError, match="proj"):
        CLIPTextCfg(**old)  # and refuses the old one, as older releases refuse the new
    for text_cfg in (new, old):  # biomedclip reads both
        raw = {"model_cfg": {"embed_dim": 512, "vision_cfg": {}, "text_cfg": text_cfg}}
        assert ModelConfig.from_open_clip(raw).text == full_model.config.text
    with pytest.raises(ConfigError, match="spelling"):
        open_clip_config(full_model.config, "newest")
