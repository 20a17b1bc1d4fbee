"""The BiomedCLIP dual encoder: ``visual`` (ViT), ``text`` (BERT) and a learnable ``logit_scale``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from biomedclip.checkpoint.hub import ResolvedSource, resolve_source
from biomedclip.checkpoint.info import RANDOM_INIT, LoadInfo
from biomedclip.checkpoint.integrity import claims_released, verify_sha256
from biomedclip.checkpoint.save import save_pretrained as _save_pretrained
from biomedclip.checkpoint.state_dict import load_into, read_state_dict
from biomedclip.config import ModelConfig
from biomedclip.model.text import TextTower
from biomedclip.model.vision import ImageTower

if TYPE_CHECKING:
    from biomedclip.tokenizer import Tokenizer

Features = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class BiomedCLIP(nn.Module):
    """Contrastive image-text model with the released checkpoint's state-dict layout.

    Besides its modules a model carries three declared fields, set by :func:`biomedclip.load`:
    ``load_info`` (where the weights came from, their sha256), ``tokenizer`` and ``preprocess``
    (the defaults of :class:`biomedclip.embedding.Encoder`, ``zero_shot`` and search).
    """

    load_info: LoadInfo
    tokenizer: Tokenizer | None
    preprocess: Callable | None

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig.biomedclip()
        self.visual = ImageTower(self.config.vision, self.config.embed_dim)
        self.text = TextTower(self.config.text, self.config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(self.config.init_logit_scale))
        self.load_info = LoadInfo(RANDOM_INIT)
        self.tokenizer = None
        self.preprocess = None

    # ---- encoders --------------------------------------------------------------------------
    def encode_image(
        self, pixel_values: torch.Tensor, normalize: bool = False, return_tokens: bool = False
    ) -> Features:
        """Image embeddings ``[B, embed_dim]``; unit length when ``normalize``.

        ``return_tokens=True`` also returns every token after the ViT's final norm,
        ``[B, 1 + n_patches, width]`` with [CLS] first (``self.visual.head`` projects them).
        """
        out = self.visual(pixel_values, return_tokens=return_tokens)
        features, tokens = out if return_tokens else (out, None)
        if normalize:
            features = F.normalize(features, dim=-1)
        return (features, tokens) if return_tokens else features

    def encode_text(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        normalize: bool = False,
        return_tokens: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> Features:
        """Text embeddings ``[B, embed_dim]``. ``input_ids`` may be padded to any length, or be a
        :class:`~biomedclip.tokenizer.TokenBatch` (``model.encode_text(tokenizer(texts))``).

        Without ``attention_mask`` the mask is derived from the pad id (the reference's rule).
        ``return_tokens=True`` also returns BERT's last hidden states ``[B, L, width]``;
        ``inputs_embeds`` ``[B, L, width]`` replaces the word embeddings (prompt learning).
        """
        if hasattr(input_ids, "input_ids") and hasattr(input_ids, "attention_mask"):
            batch = input_ids.to(self.device)
            input_ids = batch.input_ids
            attention_mask = batch.attention_mask if attention_mask is None else attention_mask
        if input_ids is None and inputs_embeds is None:
            raise ValueError("encode_text needs input_ids or inputs_embeds")
        out = self.text(input_ids, attention_mask, return_tokens, inputs_embeds)
        features, tokens = out if return_tokens else (out, None)
        if normalize:
            features = F.normalize(features, dim=-1)
        return (features, tokens) if return_tokens else features

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
        """Write safetensors weights + ``open_clip_config.json`` (+ tokenizer files; the model's
        own tokenizer when none is given)."""
        return _save_pretrained(self, directory, tokenizer=tokenizer or self.tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        config: ModelConfig | None = None,
        cache_dir: str | Path | None = None,
        verify: bool = True,
        endpoint: str | None = None,
        resolved: ResolvedSource | None = None,
    ) -> BiomedCLIP:
        """Load weights from a hub id, a local directory or a weights file, in eval mode on the CPU
        (:func:`biomedclip.load` adds the tokenizer, preprocess, device and dtype).

        A file presenting itself as the released checkpoint is verified against its sha256.
        """
        res = resolved or resolve_source(source, cache_dir=cache_dir, endpoint=endpoint)
        cfg = config or (ModelConfig.from_file(res.config) if res.config else ModelConfig())
        digest, verified = None, False
        if verify and res.weights is not None and claims_released(res.weights, res.repo_id):
            digest, verified = verify_sha256(res.weights), True
        state = read_state_dict(res.weights)
        with torch.device("meta"):
            model = cls(cfg)  # no wasted random init: weights come from the file
        model.to_empty(device="cpu")
        load_into(model, state, res.weights)
        model.text.reset_non_persistent_buffers()
        model.load_info = LoadInfo(
            str(source),
            str(res.weights),
            str(res.config) if res.config else None,
            str(res.tokenizer_dir) if res.tokenizer_dir else None,
            verified_release=verified,
            _sha256=digest,
        )
        return model.eval()


def create_model(config: ModelConfig | None = None) -> BiomedCLIP:
    """A randomly initialised model (the released architecture by default)."""
    return BiomedCLIP(config)
