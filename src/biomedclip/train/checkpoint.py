"""Training checkpoints that resume exactly, written atomically, the last K kept.

``<out>/checkpoints/step_00001000/`` holds a model directory that :func:`biomedclip.load` reads
(``open_clip_model.safetensors`` + ``open_clip_config.json`` + tokenizer files; LoRA adapters
merged), ``training_state.safetensors`` (optimizer tensors, the torch RNG states and, with LoRA, the
unmerged weights) and ``trainer_state.json`` (step, optimizer hyper-parameters, schedule, loss
scaler, python / numpy RNG states, data position). No pickle anywhere. The directory is built under
a temporary name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from biomedclip.checkpoint.save import atomic_save_safetensors
from biomedclip.config import CONFIG_FILE, WEIGHTS_FILE
from biomedclip.errors import CheckpointError
from biomedclip.io_utils import atomic_write_json
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer
from biomedclip.train.tuning import has_lora, merged_state_dict

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "trainer_state.json"
STEP_DIR = re.compile(r"^step_(\d+)$")


# ---- model export ------------------------------------------------------------------------------


def export_model(model: BiomedCLIP, directory: str | Path, tokenizer: Tokenizer | None) -> Path:
    """A loadable model directory (LoRA merged) at ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(merged_state_dict(model), directory / WEIGHTS_FILE)
    model.config.save(directory / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


# ---- RNG ---------------------------------------------------------------------------------------


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *[v for v in np_state[2:]]],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npm = meta["numpy"]
    np.random.set_state((npm[0], np.asarray(npm[1], dtype=np.uint32), *npm[2:]))


# ---- optimizer ---------------------------------------------------------------------------------


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ---- save / find / load ------------------------------------------------------------------------


def step_dirs(root: str | Path) -> list[tuple[int, Path]]:
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / STATE_JSON).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | Path) -> Path | None:
    dirs = step_dirs(root)
    return dirs[-1][1] if dirs else None


def save_checkpoint(
    root: str | Path,
    step: int,
    model: BiomedCLIP,
    tokenizer: Tokenizer | None,
    optimizer: torch.optim.Optimizer,
    schedule,
    scaler: torch.amp.GradScaler | None,
    data_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep_last: int = 3,
    export: Callable[[Path], Any] | None = None,
) -> Path:
    """Write ``root/step_{step:08d}`` atomically and prune to the last ``keep_last``.

    ``export(directory)`` writes the model files (default: a BiomedCLIP model directory via
    :func:`export_model`); other models (e.g. :mod:`biomedclip.vqa`) pass their own.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    if export is None:
        export_model(model, tmp, tokenizer)
    else:
        tmp.mkdir(parents=True, exist_ok=True)
        export(tmp)
    tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = rng_state()
    tensors.update(rng_tensors)
    if has_lora(model):
        tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    atomic_save_safetensors(tensors, tmp / STATE_TENSORS)
    atomic_write_json(
        tmp / STATE_JSON,
        {
            "step": step,
            "optimizer": opt_meta,
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "rng": rng_meta,
            "data": data_state,
            "lora": has_lora(model),
            **(extra or {}),
        },
    )
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        trash = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in step_dirs(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_partial(root: str | Path) -> None:
    """Remove temporary directories left by a crash during a save."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp-", ".old-")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(
    path: str | Path,
    model: BiomedCLIP,
    optimizer: torch.optim.Optimizer,
    schedule,
    scaler: torch.amp.GradScaler | None,
    read_weights: Callable[[Path], dict[str, torch.Tensor]] | None = None,
) -> dict[str, Any]:
    """Restore everything saved by :func:`save_checkpoint`; returns ``trainer_state.json``.

    Call it after the data loader is built: the RNG state is restored last. ``read_weights(path)``
    reads the model state dict written by a custom ``export`` (default: the model directory's).
    """
    path = Path(path)
    try:
        meta = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(path / STATE_TENSORS), device="cpu")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({e})") from e
    if meta.get("lora"):
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    elif read_weights is not None:
        state = read_weights(path)
    else:
        state = load_file(str(path / WEIGHTS_FILE), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the model being trained (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); was it written with the same model options?"
        )
    try:
        optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit ({e})") from e
    schedule.load_state_dict(meta["schedule"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    set_rng_state(tensors, meta["rng"])
    return meta
