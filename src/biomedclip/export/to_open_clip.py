"""``export open_clip``: a folder for ``open_clip.create_model_and_transforms("local-dir:OUT")``.

What :func:`biomedclip.checkpoint.save.save_pretrained` writes (weights in the released layout,
``open_clip_config.json`` in the chosen spelling, tokenizer files). At export time the folder is
reloaded by biomedclip (bit-exact) and, when open_clip is installed and its spelling matches the
installed release, by open_clip with strict key matching, and both are compared with the model.
open_clip reads the text tower's BERT architecture from ``hf_model_name`` (a hub id, cached after
the first use), as it does for the released model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.checkpoint.save import save_pretrained
from biomedclip.config import TEXT_MODEL_IDS, BertConfig
from biomedclip.errors import CheckpointError, ConfigError
from biomedclip.export.parity import Probe, measure

log = logging.getLogger(__name__)


def check_representable(model) -> None:
    """open_clip rebuilds the model from names alone: refuse what those cannot describe."""
    c = model.config
    if c.vision.timm_kwargs:
        raise ConfigError(
            f"open_clip cannot rebuild a ViT with custom timm arguments {c.vision.timm_kwargs}"
        )
    if c.text.hf_model_name in TEXT_MODEL_IDS and c.text.bert != BertConfig():
        raise ConfigError(
            f"the text tower's BERT differs from {c.text.hf_model_name}, which open_clip would "
            "build from the hub: set the config's text.hf_model_name to a local BERT directory"
        )


def spelling_of_installed() -> str | None:
    """``new`` or ``old``: the spelling the installed open_clip accepts (``None``: not installed)."""
    try:
        from open_clip.model import CLIPTextCfg
    except ImportError:
        return None
    return "new" if "hf_proj_type" in CLIPTextCfg.__dataclass_fields__ else "old"


def reload_exact(model, directory: Path) -> dict[str, Any]:
    """The folder's weights and config, read back, must be the model's bit for bit."""
    import torch
    from safetensors.torch import load_file

    from biomedclip.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig

    a, b = model.state_dict(), load_file(directory / WEIGHTS_FILE)
    bad = [k for k in a if k not in b or not torch.equal(a[k].cpu(), b[k])]
    if bad or a.keys() != b.keys():
        raise CheckpointError(f"{directory}: reload changed {len(bad)} tensors, e.g. {bad[:3]}")
    if ModelConfig.from_file(directory / CONFIG_FILE) != model.config:
        raise CheckpointError(f"{directory}: {CONFIG_FILE} does not describe the model")
    return {"tensors": len(a), "bit_exact": True}


def open_clip_parity(directory: Path, probe: Probe) -> dict[str, Any]:
    """Load the folder with open_clip (strict keys) and measure its embeddings' parity."""
    import torch

    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - spelling_of_installed() checked it
        raise ConfigError("open_clip is not installed") from e

    oc_model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{directory}")
    oc_tok = open_clip.get_tokenizer(f"local-dir:{directory}")
    oc_model.eval()

    @torch.inference_mode()
    def images(items) -> np.ndarray:
        return oc_model.encode_image(torch.stack([preprocess(im) for im in items])).numpy()

    @torch.inference_mode()
    def texts(items) -> np.ndarray:
        return oc_model.encode_text(oc_tok(items)).numpy()

    return measure(probe, images, texts)


def export_open_clip(
    model, tokenizer, directory: Path, probe: Probe, options: dict
) -> dict[str, Any]:
    check_representable(model)
    spelling = options["open_clip_spelling"]
    save_pretrained(model, directory, tokenizer, open_clip_spelling=spelling)
    parity: dict[str, Any] = {"biomedclip_reload": reload_exact(model, directory)}
    installed = spelling_of_installed()
    if installed is None:
        parity["open_clip"] = {"checked": False, "reason": "open_clip is not installed"}
    elif installed != spelling:
        parity["open_clip"] = {
            "checked": False,
            "reason": f"the installed open_clip reads the {installed!r} spelling",
        }
    else:
        try:
            parity["open_clip"] = {"checked": True, **open_clip_parity(directory, probe)}
        except Exception as e:  # noqa: BLE001 - e.g. offline without the BERT config cached
            if isinstance(e, RuntimeError) and "state_dict" in str(e):  # strict loading failed
                raise CheckpointError(f"{directory}: open_clip refuses the weights ({e})") from e
            log.warning("open_clip could not load the export for a parity check: %s", e)
            parity["open_clip"] = {"checked": False, "reason": f"{type(e).__name__}: {e}"}
    return parity
