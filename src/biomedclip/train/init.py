"""Model initialisation for training: the released checkpoint, separate tower checkpoints, or scratch.

* ``pretrained``: :func:`biomedclip.load` on ``model.source`` (hub id, directory or weights file).
* ``towers``: a fresh model whose ViT trunk takes a timm checkpoint (a weights file, a directory
  holding ``model.safetensors``/``pytorch_model.bin``, or ``hf-hub:timm/<name>`` fetched by timm) and
  whose BERT takes a transformers checkpoint (a directory or a hub id), as in the paper (ImageNet
  ViT + PubMedBERT). Projections and ``logit_scale`` start fresh.
* ``scratch``: random init of the preset (``biomedclip`` or ``tiny``) or of ``model.config_file``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from biomedclip.checkpoint.state_dict import read_state_dict
from biomedclip.config import DEFAULT_MODEL, ModelConfig
from biomedclip.errors import CheckpointError, ConfigError
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer
from biomedclip.train.config import ModelSection

log = logging.getLogger(__name__)

TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def apply_model_overrides(cfg: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """Set dotted ``ModelConfig`` keys, e.g. ``{"vision.patch_dropout": 0.5}``."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"model.overrides: {key!r} is not a ModelConfig key")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"model.overrides: {key!r} is not a ModelConfig key")
        node[parts[-1]] = value
    return ModelConfig.from_dict(data)


def base_config(section: ModelSection, vocab_size: int | None = None) -> ModelConfig:
    if section.config_file:
        cfg = ModelConfig.from_file(section.config_file)
    elif section.preset == "tiny":
        cfg = ModelConfig.tiny(vocab_size=vocab_size or 30522)
    else:
        cfg = ModelConfig.biomedclip()
    if vocab_size is not None and cfg.text.bert.vocab_size < vocab_size:
        cfg.text.bert = dataclasses.replace(cfg.text.bert, vocab_size=vocab_size)
    cfg = apply_model_overrides(cfg, section.overrides)
    if section.patch_dropout is not None:
        cfg.vision = dataclasses.replace(cfg.vision, patch_dropout=section.patch_dropout)
    return cfg


def load_training_tokenizer(section: ModelSection, context_length: int) -> Tokenizer:
    """The tokenizer named by ``model.tokenizer`` (``shapes``, a directory or a hub id)."""
    from biomedclip.factory import load_tokenizer

    name = section.tokenizer
    if name == "shapes":
        from biomedclip.train.shapes import shapes_tokenizer

        return shapes_tokenizer(context_length)
    if name is None:
        src = section.source if section.init == "pretrained" else None
        if src is None and section.text_weights and Path(section.text_weights).is_dir():
            src = section.text_weights
        return load_tokenizer(src or DEFAULT_MODEL, context_length=context_length)
    if Path(name).is_dir():
        return Tokenizer.from_pretrained(name, context_length=context_length)
    return load_tokenizer(name, context_length=context_length)


def load_timm_trunk(trunk: torch.nn.Module, source: str) -> None:
    """Copy a timm ViT checkpoint into ``trunk`` (the classifier head is dropped)."""
    if source.startswith("hf-hub:") or not Path(source).exists():
        import timm

        name = source[len("hf-hub:") :] if source.startswith("hf-hub:") else source
        log.info("fetching timm weights %s", source)
        ref = timm.create_model(
            ("hf-hub:" + name) if "/" in name else name, pretrained=True, num_classes=0
        )
        state = ref.state_dict()
    else:
        path = Path(source)
        if path.is_dir():
            found = next((path / f for f in TIMM_WEIGHT_FILES if (path / f).is_file()), None)
            if found is None:
                raise CheckpointError(
                    f"{path}: no {' / '.join(TIMM_WEIGHT_FILES)} in this directory"
                )
            path = found
        state = read_state_dict(path)
        state = {
            k[len("visual.trunk.") :] if k.startswith("visual.trunk.") else k: v
            for k, v in state.items()
        }
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith(("head.", "fc_norm.")) or k in trunk.state_dict()
    }
    _load_strict(trunk, state, f"vision weights {source}")


def load_bert(transformer: torch.nn.Module, source: str) -> None:
    """Copy a transformers BERT checkpoint (directory or hub id) into the text tower's BertModel."""
    from transformers import BertModel

    try:
        ref = BertModel.from_pretrained(source, add_pooling_layer=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"text weights {source}: cannot load a BERT model ({e})") from e
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("pooler.")}
    _load_strict(transformer, state, f"text weights {source}")


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    own = module.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise CheckpointError(
            f"{what}: shape mismatch for {k} ({tuple(state[k].shape)} vs model "
            f"{tuple(own[k].shape)}); does the model config match the checkpoint?"
        )
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: does not fit the tower (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def build_model(section: ModelSection, tokenizer: Tokenizer | None = None) -> BiomedCLIP:
    """The model to train, per ``model.init``."""
    if section.init == "pretrained":
        from biomedclip.factory import load_model

        model = load_model(section.source)
        cfg = model.config
        if section.overrides or section.patch_dropout is not None:
            cfg = apply_model_overrides(cfg, section.overrides)
            if section.patch_dropout is not None:
                cfg.vision = dataclasses.replace(cfg.vision, patch_dropout=section.patch_dropout)
            rebuilt = BiomedCLIP(cfg)
            rebuilt.load_state_dict(model.state_dict())
            model = rebuilt
        model.train()
        return model
    vocab = tokenizer.vocab_size if tokenizer is not None else None
    cfg = base_config(section, vocab)
    model = BiomedCLIP(cfg)
    if section.init == "towers":
        if not (section.vision_weights or section.text_weights):
            raise ConfigError(
                "model.init = 'towers' needs model.vision_weights and/or text_weights"
            )
        if section.vision_weights:
            load_timm_trunk(model.visual.trunk, section.vision_weights)
        if section.text_weights:
            load_bert(model.text.transformer, section.text_weights)
    model.train()
    return model
