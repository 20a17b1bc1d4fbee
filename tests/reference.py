"""Build open_clip's BiomedCLIP (the reference implementation) offline, for parity tests.

open_clip 3.x cannot read the released config as is (``proj``/``pooler_type`` are unknown keys) and
fetches the BERT config from the hub, so we lay out a temporary ``local-dir:`` model directory with
the renamed keys, the BERT config and the released tokenizer files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def reference_dir(hub_dir: Path, tmp: Path) -> Path:
    """A ``local-dir:`` open_clip model directory (config + tokenizer, no weights)."""
    bert = tmp / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    shutil.copy(hub_dir / "biomedbert_config.json", bert / "config.json")
    cfg = json.loads((hub_dir / "open_clip_config.json").read_text())
    tc = cfg["model_cfg"]["text_cfg"]
    tc["hf_proj_type"] = tc.pop("proj")
    tc["hf_pooler_type"] = tc.pop("pooler_type")
    tc["hf_model_name"] = str(bert)
    tc["hf_tokenizer_name"] = str(tmp)
    (tmp / "open_clip_config.json").write_text(json.dumps(cfg))
    for name in TOKENIZER_FILES:
        shutil.copy(hub_dir / name, tmp / name)
    return tmp


def build_reference(hub_dir: Path, tmp: Path, seed: int = 0, prepared: bool = False):
    """open_clip ``(model, preprocess, tokenizer)`` with random weights (seeded), in eval mode.

    ``prepared``: ``tmp`` already holds a (possibly edited) :func:`reference_dir`.
    """
    import logging

    import open_clip
    import torch

    d = tmp if prepared else reference_dir(hub_dir, tmp)
    torch.manual_seed(seed)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no weights were found
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{d}", pretrained_hf=False
    )
    tokenizer = open_clip.get_tokenizer(f"local-dir:{d}")
    return model.eval(), preprocess, tokenizer


def save_reference_checkpoint(model, path: Path) -> Path:
    """Save the reference's state dict the way the released file is stored (a pickled dict)."""
    import torch

    torch.save(model.state_dict(), path)
    return path
