"""Read weights files and fit them to the model's state-dict layout.

Formats: ``.safetensors``; pickle files (``open_clip_pytorch_model.bin``, ``.pt``/``.pth``/``.ckpt``)
read only with ``torch.load(weights_only=True)``; open_clip training checkpoints
(``{"state_dict": ...}`` with ``module.`` prefixes). Keys the released checkpoint carries but current
transformers does not (``position_ids``, the unused BERT pooler) are dropped and a ``[1]``-shaped
``logit_scale`` is reshaped; everything else must match exactly.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from biomedclip.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
DROPPED_KEYS = ("text.transformer.embeddings.position_ids",)
DROPPED_PREFIXES = ("text.transformer.pooler.",)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a raw state dict (tensors on CPU) from a weights file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: weights file is empty")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to unpickle (only plain tensor checkpoints load with "
            f"weights_only=True): {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path}: contains no state dict of tensors")


def normalize_state_dict(
    state_dict: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Strip ``module.`` prefixes, drop legacy keys, reshape ``logit_scale`` to the model's shape."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("_orig_mod."):  # torch.compile wrapper
            key = key[len("_orig_mod.") :]
        if key in DROPPED_KEYS:
            continue
        if key.startswith(DROPPED_PREFIXES) and key not in model_state:
            continue  # the BERT pooler of a cls_last_hidden_state_pooler checkpoint: unused
        out[key] = value
    if "logit_scale" in out and "logit_scale" in model_state:
        target = model_state["logit_scale"].shape
        if out["logit_scale"].shape != target and out["logit_scale"].numel() == 1:
            out["logit_scale"] = out["logit_scale"].reshape(target)
    return out


def check_compatible(
    state_dict: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor], source: object
) -> None:
    """Raise a :class:`CheckpointError` listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(model_state) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_state))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in set(state_dict) & set(model_state)
        if state_dict[k].shape != model_state[k].shape
    )
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source}: checkpoint does not fit the model"]
    for title, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", shapes),
    ):
        if items:
            shown = ", ".join(items[:12]) + (
                f", ... ({len(items) - 12} more)" if len(items) > 12 else ""
            )
            parts.append(f"{title} keys ({len(items)}): {shown}")
    raise CheckpointError("\n  ".join(parts))


def load_into(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: object
) -> None:
    """Normalise, check and strictly load ``state_dict`` into ``model`` (dtype cast to the model's)."""
    model_state = model.state_dict()
    sd = normalize_state_dict(state_dict, model_state)
    check_compatible(sd, model_state, source)
    model.load_state_dict(sd, strict=True)
