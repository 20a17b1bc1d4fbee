"""The reference model (open_clip) built offline, and ours loaded from the very same weights.

open_clip 3.x cannot read the released config as is (``proj``/``pooler_type`` are unknown keys) and
fetches the BERT config from the hub, so :func:`reference_dir` lays out a ``local-dir:`` model
directory with the renamed keys, the BERT config and the released tokenizer files (no weights).
``build_reference(tmpdir)`` builds open_clip's model from it (towers randomly initialised, seeded)
and ``ours_from_reference(oc_model, tmpdir)`` loads ours from its saved state dict with
:func:`biomedclip.load`, so both sides hold identical weights. ``depth`` keeps only the first
blocks of both towers (for quick runs on small machines; recorded by the callers).

Used by the benchmarks and by the parity/tokenizer tests (``from benchmarks._reference import``).
Nothing is written into the repository: every file goes under ``tmpdir``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._bench import machine_info, write_result  # noqa: E402,F401  (used by the scripts)

SHARED = Path(os.environ.get("BIOMEDCLIP_SHARED_DATA", ROOT.parent / "shared" / "data"))
HUB_DIR = SHARED / "biomedclip_hub"
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def _configs(hub_dir: Path, depth: int | None) -> tuple[dict, dict]:
    """The released open_clip config and BERT config, cut to ``depth`` blocks when given."""
    cfg = json.loads((hub_dir / "open_clip_config.json").read_text())
    bert = json.loads((hub_dir / "biomedbert_config.json").read_text())
    if depth:
        cfg["model_cfg"]["vision_cfg"]["layers"] = depth
        bert["num_hidden_layers"] = depth
    return cfg, bert


def reference_dir(hub_dir: Path, tmp: Path, depth: int | None = None) -> Path:
    """A ``local-dir:`` open_clip model directory (config + tokenizer, no weights) in ``tmp``."""
    tmp = Path(tmp)
    bert_dir = tmp / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    cfg, bert = _configs(hub_dir, depth)
    (bert_dir / "config.json").write_text(json.dumps(bert))
    tc = cfg["model_cfg"]["text_cfg"]
    tc["hf_proj_type"] = tc.pop("proj")
    tc["hf_pooler_type"] = tc.pop("pooler_type")
    tc["hf_model_name"] = str(bert_dir)
    tc["hf_tokenizer_name"] = str(tmp)
    (tmp / "open_clip_config.json").write_text(json.dumps(cfg))
    for name in TOKENIZER_FILES:
        shutil.copy(hub_dir / name, tmp / name)
    return tmp


def build_reference(
    tmpdir: str | Path, seed: int = 0, hub_dir: Path | None = None, depth: int | None = None
):
    """open_clip's BiomedCLIP (random weights, seeded) -> ``(model, preprocess, tokenizer)``, eval
    mode, laid out in ``tmpdir/reference``."""
    import logging

    import open_clip
    import torch

    hub_dir = Path(hub_dir or HUB_DIR)
    if not (hub_dir / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"released hub files not found in {hub_dir}")
    d = reference_dir(hub_dir, Path(tmpdir) / "reference", depth)
    torch.manual_seed(seed)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no weights were found
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{d}", pretrained_hf=False
    )
    tokenizer = open_clip.get_tokenizer(f"local-dir:{d}")
    if depth:  # open_clip passes no depth to timm: keep the first blocks of the ViT trunk
        model.visual.trunk.blocks = model.visual.trunk.blocks[:depth]
    return model.eval(), preprocess, tokenizer


def save_reference_checkpoint(model, path: Path) -> Path:
    """Save the reference's state dict the way the released file is stored (a pickled dict)."""
    import torch

    torch.save(model.state_dict(), path)
    return path


def ours_from_reference(oc_model, tmpdir: str | Path, depth: int | None = None):
    """Our ``(model, preprocess, tokenizer)`` loaded from ``oc_model``'s saved state dict."""
    import biomedclip

    model_dir = Path(tmpdir) / "ours"
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((HUB_DIR / "open_clip_config.json").read_text())
    if depth:  # our exact config (written by us, read back as is): both towers cut to ``depth``
        from biomedclip.config import ModelConfig

        mc = ModelConfig.from_open_clip(cfg)
        mc.vision.timm_kwargs = {**mc.vision.timm_kwargs, "depth": depth}
        mc.text.bert = dataclasses.replace(mc.text.bert, num_hidden_layers=depth)
        cfg = mc.to_open_clip()
    (model_dir / "open_clip_config.json").write_text(json.dumps(cfg))
    for name in TOKENIZER_FILES:
        shutil.copyfile(HUB_DIR / name, model_dir / name)
    save_reference_checkpoint(oc_model, model_dir / "open_clip_pytorch_model.bin")
    return biomedclip.load(str(model_dir))
