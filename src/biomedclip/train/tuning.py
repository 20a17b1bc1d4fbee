"""Which parameters train: lock a tower except its last N blocks, or add LoRA adapters (peft).

As in open_clip's ``lock_image``/``lock_text``, locking acts on the trunk (the timm ViT or BERT);
the tower's projection stays trainable, and ``logit_scale`` always trains. LoRA freezes the base
weights of the towers it is applied to and trains only the adapters (plus projections).
:func:`merged_state_dict` folds adapters back into plain weights, so a LoRA-trained model saves in
the released layout and loads with :func:`biomedclip.load`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from biomedclip.errors import ConfigError
from biomedclip.model import BiomedCLIP
from biomedclip.train.config import LoraConfig, ModelSection

VIT_LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"
BERT_LORA_TARGETS = (
    r".*layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
    r"intermediate\.dense|output\.dense)"
)


def lock_tower(
    trunk: nn.Module,
    blocks: nn.ModuleList | nn.Sequential,
    unlocked: int,
    tail: list[nn.Module] | None = None,
) -> None:
    """Freeze ``trunk`` except its last ``unlocked`` blocks (and ``tail`` modules when unlocked > 0)."""
    if unlocked < 0 or unlocked > len(blocks):
        raise ConfigError(f"unlocked blocks must be in 0..{len(blocks)}, got {unlocked}")
    for p in trunk.parameters():
        p.requires_grad_(False)
    if unlocked:
        for block in list(blocks)[-unlocked:]:
            for p in block.parameters():
                p.requires_grad_(True)
        for m in tail or []:
            for p in m.parameters():
                p.requires_grad_(True)


def add_lora(module: nn.Module, cfg: LoraConfig, targets: str | list[str]) -> nn.Module:
    """Inject LoRA adapters into ``module`` in place and freeze everything but the adapters."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none"
    )
    module = inject_adapter_in_model(peft_cfg, module)
    n = 0
    for name, p in module.named_parameters():
        is_lora = "lora_" in name
        p.requires_grad_(is_lora)
        n += is_lora
    if n == 0:
        raise ConfigError(f"LoRA targets {targets!r} matched no layer")
    return module


def configure_trainable(model: BiomedCLIP, section: ModelSection) -> None:
    """Apply ``model.lock_*`` and ``model.lora`` to ``model`` in place."""
    if section.lock_image:
        trunk = model.visual.trunk
        tail = [
            m
            for m in (getattr(trunk, "norm", None), getattr(trunk, "fc_norm", None))
            if isinstance(m, nn.Module)
        ]
        lock_tower(trunk, trunk.blocks, section.lock_image_unlocked_blocks, tail)
    if section.lock_text:
        lock_tower(model.text.transformer, model.text.blocks, section.lock_text_unlocked_blocks)
    lora = section.lora
    if lora.enabled:
        if "image" in lora.towers:
            model.visual.trunk = add_lora(
                model.visual.trunk, lora, lora.vision_targets or VIT_LORA_TARGETS
            )
        if "text" in lora.towers:
            model.text.transformer = add_lora(
                model.text.transformer, lora, lora.text_targets or BERT_LORA_TARGETS
            )


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())


def merged_state_dict(model: BiomedCLIP) -> dict[str, torch.Tensor]:
    """The state dict in the plain model layout, LoRA adapters merged into their base weights."""
    if not has_lora(model):
        return model.state_dict()
    from peft.tuners.tuners_utils import BaseTunerLayer

    clone = copy.deepcopy(model)
    for name, module in list(clone.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = clone.get_submodule(parent_name) if parent_name else clone
            setattr(parent, child, module.get_base_layer())
    return clone.state_dict()


def trainable_summary(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": train}
