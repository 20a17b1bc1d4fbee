"""``VQAModel``: BiomedCLIP towers + co-attention fusion + answer classifier; saving and loading.

Image tokens come from ``backbone.encode_image(pixels, return_tokens=True)`` ([CLS] + patches after
the ViT's final norm) or from the feature cache; question tokens from
``backbone.encode_text(ids, mask, return_tokens=True)`` (BERT's last hidden states). A saved model
is a directory: ``backbone/`` (a BiomedCLIP model directory that :func:`biomedclip.load` reads),
``fusion.safetensors`` (fusion + head) and ``vqa_config.json`` (fusion sizes, answer vocabulary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from biomedclip.checkpoint.save import atomic_save_safetensors
from biomedclip.errors import CheckpointError
from biomedclip.io_utils import atomic_write_json
from biomedclip.model import BiomedCLIP
from biomedclip.vqa.answers import AnswerVocab
from biomedclip.vqa.config import FusionConfig
from biomedclip.vqa.fusion import AnswerHead, FusionEncoder

BACKBONE_DIR = "backbone"
FUSION_FILE = "fusion.safetensors"
VQA_CONFIG_FILE = "vqa_config.json"


def tune_tower(trunk: nn.Module, blocks, mode: str, unfrozen_blocks: int, tail=()) -> None:
    """``frozen``: no parameter trains; ``partial``: the last blocks (+ ``tail``); ``full``: all."""
    from biomedclip.train.tuning import lock_tower

    if mode == "full":
        for p in trunk.parameters():
            p.requires_grad_(True)
        return
    lock_tower(trunk, blocks, unfrozen_blocks if mode == "partial" else 0, list(tail))


class VQAModel(nn.Module):
    """Answer classification over a fixed vocabulary from an image and a question."""

    def __init__(self, backbone: BiomedCLIP, fusion: FusionConfig, vocab: AnswerVocab):
        super().__init__()
        self.backbone = backbone
        self.fusion_config = fusion
        self.vocab = vocab
        text_width = backbone.config.text.bert.hidden_size
        image_width = backbone.visual.trunk.num_features
        self.fusion = FusionEncoder(fusion, text_width, image_width)
        self.head = AnswerHead(fusion.hidden, len(vocab))
        self.image_frozen = False

    # ---- trainable parts ------------------------------------------------------------------
    def configure(self, image: str, image_blocks: int, text: str, text_blocks: int) -> None:
        """Freeze / partly unfreeze / fine-tune each tower (projection heads are unused: frozen)."""
        visual, textt = self.backbone.visual, self.backbone.text
        trunk = visual.trunk
        tail = [m for m in (getattr(trunk, "norm", None),) if isinstance(m, nn.Module)]
        tune_tower(trunk, trunk.blocks, image, image_blocks, tail)
        tune_tower(textt.transformer, textt.blocks, text, text_blocks)
        for p in [*visual.head.parameters(), *textt.proj.parameters(), self.backbone.logit_scale]:
            p.requires_grad_(False)
        self.image_frozen = image == "frozen"

    def groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable parameters by learning-rate group: ``encoders``, ``fusion``, ``head``."""
        out: dict[str, list[tuple[str, nn.Parameter]]] = {"encoders": [], "fusion": [], "head": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                key = "head" if name.startswith("head.") else name.split(".")[0]
                out["encoders" if key == "backbone" else key].append((name, p))
        return out

    # ---- forward ----------------------------------------------------------------------------
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 1 + n_patches, width] through the public model API (no graph when frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.image_frozen):
            _, tokens = self.backbone.encode_image(pixels, return_tokens=True)
        return tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixels: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Answer logits ``[B, n_answers]`` from pixels or precomputed image tokens."""
        if image_tokens is None:
            if pixels is None:
                raise ValueError("VQAModel needs pixels or image_tokens")
            image_tokens = self.image_tokens(pixels)
        _, text_states = self.backbone.encode_text(input_ids, attention_mask, return_tokens=True)
        pooled = self.fusion(text_states, attention_mask, image_tokens.to(text_states.dtype))
        return self.head(pooled)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)
        self.fusion.grad_checkpointing = enable

    # ---- persistence -------------------------------------------------------------------------
    def fusion_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def describe(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "format": "biomedclip-vqa/1",
            "fusion": asdict(self.fusion_config),
            "answers": self.vocab.answers,
            "vocabulary": self.vocab.source,
            "backbone_source": getattr(getattr(self.backbone, "load_info", None), "source", None),
        }

    def save_pretrained(self, directory: str | Path, tokenizer=None) -> Path:
        """Write ``backbone/``, ``fusion.safetensors`` and ``vqa_config.json`` (atomically each)."""
        from biomedclip.train.checkpoint import export_model

        directory = Path(directory)
        export_model(self.backbone, directory / BACKBONE_DIR, tokenizer)
        atomic_save_safetensors(self.fusion_state(), directory / FUSION_FILE)
        atomic_write_json(directory / VQA_CONFIG_FILE, self.describe())
        return directory


def read_vqa_config(directory: str | Path) -> tuple[FusionConfig, AnswerVocab, dict]:
    path = Path(directory) / VQA_CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return (
            FusionConfig(**meta["fusion"]),
            AnswerVocab(meta["answers"], meta["vocabulary"]),
            meta,
        )
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{directory}: not a VQA model directory (no {VQA_CONFIG_FILE})"
        ) from e
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable VQA config ({e})") from e


def read_fusion_state(directory: str | Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / FUSION_FILE
    try:
        return load_file(str(path), device="cpu")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the fusion weights ({e})") from e


def full_state(directory: str | Path) -> dict[str, torch.Tensor]:
    """The whole ``VQAModel`` state dict stored in a saved directory (for checkpoint resume)."""
    from biomedclip.checkpoint.state_dict import read_state_dict
    from biomedclip.config import WEIGHTS_FILE

    backbone = read_state_dict(Path(directory) / BACKBONE_DIR / WEIGHTS_FILE)
    return {**{f"backbone.{k}": v for k, v in backbone.items()}, **read_fusion_state(directory)}


def load_vqa_model(directory: str | Path, device: str | torch.device = "cpu"):
    """``(model, preprocess, tokenizer)`` of a saved VQA model, in eval mode."""
    from biomedclip.factory import load

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: VQA model directory not found")
    fusion, vocab, _ = read_vqa_config(directory)
    backbone, preprocess, tokenizer = load(str(directory / BACKBONE_DIR))
    model = VQAModel(backbone, fusion, vocab)
    missing, unexpected = model.load_state_dict(read_fusion_state(directory), strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: fusion weights do not fit (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    return model.to(device).eval(), preprocess, tokenizer
