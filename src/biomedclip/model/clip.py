"""The BiomedCLIP dual encoder: ``visual`` (ViT), ``text`` (BERT) and a learnable ``logit_scale``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from biomedclip.config import ModelConfig
from biomedclip.model.text import TextTower
from biomedclip.model.vision import ImageTower

if TYPE_CHECKING:
    from biomedclip.tokenizer import Tokenizer


class BiomedCLIP(nn.Module):
    """Contrastive image-text model with the released checkpoint's state-dict layout."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig.biomedclip()
        self.visual = ImageTower(self.config.vision, self.config.embed_dim)
        self.text = TextTower(self.config.text, self.config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(self.config.init_logit_scale))

    # ---- encoders --------------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings, ``[B, embed_dim]``; unit length when ``normalize``."""
        features = self.visual(pixel_values)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Text embeddings, ``[B, embed_dim]``. ``input_ids`` may be padded to any length.

        Without ``attention_mask`` the mask is derived from the pad id (the reference's rule).
        """
        features = self.text(input_ids, attention_mask)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised image and text features and ``exp(logit_scale)``."""
        image = self.encode_image(pixel_values, normalize=True)
        text = self.encode_text(input_ids, attention_mask, normalize=True)
        return image, text, self.logit_scale.exp()

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``exp(logit_scale) * cos(image, text)``, ``[n_images, n_texts]``."""
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * image_features @ text_features.T

    # ---- training helpers --------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- persistence (see biomedclip.checkpoint) -------------------------------------------
    def save_pretrained(self, directory: str | Path, tokenizer: Tokenizer | None = None) -> Path:
        """Write safetensors weights + ``open_clip_config.json`` (+ tokenizer files)."""
        from biomedclip.checkpoint.save import save_pretrained

        return save_pretrained(self, directory, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs) -> BiomedCLIP:
        """Load from a hub id, a local directory or a weights file (see :func:`biomedclip.load`)."""
        from biomedclip.factory import load_model

        return load_model(source, **kwargs)


def create_model(config: ModelConfig | None = None) -> BiomedCLIP:
    """A randomly initialised model (the released architecture by default)."""
    return BiomedCLIP(config)
