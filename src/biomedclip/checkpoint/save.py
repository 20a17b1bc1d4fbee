"""Write a model directory that loads back offline: safetensors + config + tokenizer files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from biomedclip.config import CONFIG_FILE, WEIGHTS_FILE
from biomedclip.io_utils import make_temp_beside

if TYPE_CHECKING:
    from biomedclip.model import BiomedCLIP
    from biomedclip.tokenizer import Tokenizer


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Save tensors to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_beside(path)
    try:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            tmp,
            metadata=metadata or {"format": "pt"},
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pretrained(
    model: BiomedCLIP, directory: str | Path, tokenizer: Tokenizer | None = None
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(model.state_dict(), directory / WEIGHTS_FILE)
    model.config.save(directory / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
