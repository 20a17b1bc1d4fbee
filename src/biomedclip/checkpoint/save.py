"""Write a model directory that loads back offline and in open_clip: safetensors + config + tokenizer.

``open_clip_config.json`` is written in one of the two spellings open_clip has used for the text
tower's keys, because each release accepts only its own (its config is a dataclass):

- ``"new"`` (default): ``hf_proj_type`` / ``hf_pooler_type``, read by open_clip >= 2.23 (3.x included);
- ``"old"``: ``proj`` / ``pooler_type``, the released BiomedCLIP spelling, read by open_clip < 2.23
  (newer releases fail on it with ``unexpected keyword argument 'proj'``, older ones on the new
  spelling with ``unexpected keyword argument 'hf_proj_type'``).

biomedclip reads both (and the exact ``biomedclip_cfg`` block written beside them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors.torch import save_file

from biomedclip.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_path, atomic_write_json

if TYPE_CHECKING:
    from biomedclip.tokenizer import Tokenizer

OPEN_CLIP_SPELLINGS = ("new", "old")
_NEW_KEYS = {"proj": "hf_proj_type", "pooler_type": "hf_pooler_type"}


class SavableModel(Protocol):
    """What :func:`save_pretrained` needs of a model (:class:`biomedclip.model.BiomedCLIP` is one):
    checkpoint code sits below the model package and never imports it, not even for types."""

    config: ModelConfig

    def state_dict(self) -> dict[str, torch.Tensor]: ...


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Save tensors to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            tmp,
            metadata=metadata or {"format": "pt"},
        )


def open_clip_config(config: ModelConfig, spelling: str = "new") -> dict[str, Any]:
    """The ``open_clip_config.json`` dict of ``config`` in open_clip's ``new`` or ``old`` spelling."""
    if spelling not in OPEN_CLIP_SPELLINGS:
        raise ConfigError(
            f"unknown open_clip config spelling {spelling!r} (use one of {OPEN_CLIP_SPELLINGS})"
        )
    data = config.to_open_clip()
    if spelling == "new":
        tc = data["model_cfg"]["text_cfg"]
        data["model_cfg"]["text_cfg"] = {_NEW_KEYS.get(k, k): v for k, v in tc.items()}
    return data


def save_pretrained(
    model: SavableModel,
    directory: str | Path,
    tokenizer: Tokenizer | None = None,
    open_clip_spelling: str = "new",
) -> Path:
    """Write ``open_clip_model.safetensors``, ``open_clip_config.json`` and the tokenizer files.

    The directory loads with :func:`biomedclip.load` and with
    ``open_clip.create_model_and_transforms("local-dir:DIR")`` (strict keys; see the module doc for
    ``open_clip_spelling``). Every file is written atomically.
    """
    config = open_clip_config(model.config, open_clip_spelling)  # checks the spelling first
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    atomic_write_json(directory / CONFIG_FILE, config)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
