"""Image tower: a timm ViT trunk and a linear projection (keys ``trunk.*``, ``head.proj.*``)."""

from __future__ import annotations

from collections import OrderedDict

import timm
import torch
from torch import nn

from biomedclip.config import VisionConfig


class ImageTower(nn.Module):
    """timm ViT without classifier (CLS token after the final norm) -> Linear(width, embed_dim)."""

    def __init__(self, cfg: VisionConfig, embed_dim: int):
        super().__init__()
        kwargs = dict(cfg.timm_kwargs)
        if cfg.patch_dropout:
            kwargs["patch_drop_rate"] = cfg.patch_dropout
        if cfg.drop_path_rate:
            kwargs["drop_path_rate"] = cfg.drop_path_rate
        self.trunk = timm.create_model(
            cfg.timm_model_name, pretrained=False, num_classes=0, global_pool="token", **kwargs
        )
        self.head = nn.Sequential(
            OrderedDict(proj=nn.Linear(self.trunk.num_features, embed_dim, bias=cfg.proj_bias))
        )
        self.image_size = cfg.image_size

    def forward(
        self, pixel_values: torch.Tensor, return_tokens: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Projected image features ``[B, D]``; with ``return_tokens`` also every token after the
        trunk's final norm, ``[B, 1 + n_patches, width]`` ([CLS] first), through timm's public
        ``forward_features`` / ``forward_head``."""
        if not return_tokens:
            return self.head(self.trunk(pixel_values))
        tokens = self.trunk.forward_features(pixel_values)
        return self.head(self.trunk.forward_head(tokens, pre_logits=True)), tokens

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)

    @property
    def blocks(self) -> nn.ModuleList | nn.Sequential:
        return self.trunk.blocks
