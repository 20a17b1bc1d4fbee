"""BiomedCLIP (ViT-B/16 + PubMedBERT) for Hugging Face transformers (``trust_remote_code=True``).

Written by ``biomedclip export hf``. Self-contained: depends only on torch, timm and transformers.
The module layout and the weights file are those of the released open_clip checkpoint, so the
features equal the ``biomedclip`` package's (and open_clip's).

    model = AutoModel.from_pretrained(DIR, trust_remote_code=True)
    model.get_image_features(pixel_values)                 # [B, D], not normalised
    model.get_text_features(input_ids, attention_mask)     # [B, D], not normalised
    model(input_ids=..., pixel_values=..., attention_mask=...).logits_per_image
    model.vision_model(pixel_values, output_hidden_states=True).hidden_states  # patch tokens
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

DEFAULT_VISION = {
    "timm_model_name": "vit_base_patch16_224",
    "image_size": 224,
    "timm_kwargs": {},
    "proj_bias": False,
}
DEFAULT_TEXT = {
    "context_length": 256,
    "proj": "mlp",
    "pooler": "cls_last_hidden_state_pooler",
    "bert": {},
}


class BiomedCLIPConfig(PretrainedConfig):
    """``vision_cfg`` (timm model name and kwargs), ``text_cfg`` (BERT config, projection, pooler)."""

    model_type = "biomedclip"

    def __init__(
        self,
        embed_dim: int = 512,
        vision_cfg: dict | None = None,
        text_cfg: dict | None = None,
        logit_scale_init_value: float = math.log(1 / 0.07),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.vision_cfg = {**DEFAULT_VISION, **(vision_cfg or {})}
        self.text_cfg = {**DEFAULT_TEXT, **(text_cfg or {})}
        self.logit_scale_init_value = logit_scale_init_value


@dataclass
class BiomedCLIPVisionOutput(ModelOutput):
    """``image_embeds`` [B, D] (projected), ``last_hidden_state`` [B, 1 + patches, width] after the
    final norm ([CLS] first), ``pooler_output`` the [CLS] token, ``hidden_states`` the embeddings
    and each block's output (before the final norm) when asked."""

    image_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class BiomedCLIPTextOutput(ModelOutput):
    text_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class BiomedCLIPOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_model_output: BiomedCLIPTextOutput | None = None
    vision_model_output: BiomedCLIPVisionOutput | None = None


class BiomedCLIPVisionTower(nn.Module):
    """timm ViT (``trunk``) + linear projection (``head.proj``), as in the released checkpoint."""

    def __init__(self, cfg: dict, embed_dim: int):
        super().__init__()
        self.trunk = timm.create_model(
            cfg["timm_model_name"],
            pretrained=False,
            num_classes=0,
            global_pool="token",
            **cfg.get("timm_kwargs", {}),
        )
        proj = nn.Linear(self.trunk.num_features, embed_dim, bias=cfg.get("proj_bias", False))
        self.head = nn.Sequential(OrderedDict(proj=proj))

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None, **kwargs
    ) -> BiomedCLIPVisionOutput:
        t = self.trunk
        x = t.norm_pre(t.patch_drop(t._pos_embed(t.patch_embed(pixel_values))))
        hidden = [x]
        for block in t.blocks:
            x = block(x)
            hidden.append(x)
        x = t.norm(x)
        pooled = t.forward_head(x, pre_logits=True)
        return BiomedCLIPVisionOutput(
            image_embeds=self.head(pooled),
            last_hidden_state=x,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if output_hidden_states else None,
        )


class BiomedCLIPTextTower(nn.Module):
    """BERT (``transformer``) + [CLS] pooling + MLP or linear projection (``proj``)."""

    def __init__(self, cfg: dict, embed_dim: int):
        super().__init__()
        self.pooler = cfg.get("pooler", "cls_last_hidden_state_pooler")
        bert = BertConfig(**cfg["bert"])
        self.transformer = BertModel(bert, add_pooling_layer=self.pooler == "cls_pooler")
        width = bert.hidden_size
        if cfg.get("proj", "mlp") == "mlp":
            hidden = (width + embed_dim) // 2
            self.proj = nn.Sequential(
                nn.Linear(width, hidden, bias=False),
                nn.GELU(),
                nn.Linear(hidden, embed_dim, bias=False),
            )
        else:
            self.proj = nn.Linear(width, embed_dim, bias=False)
        self.pad_token_id = bert.pad_token_id

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BiomedCLIPTextOutput:
        if attention_mask is None:
            if input_ids is None:
                attention_mask = torch.ones(inputs_embeds.shape[:2], device=inputs_embeds.device)
            else:
                attention_mask = (input_ids != self.pad_token_id).long()
        out = self.transformer(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=bool(output_hidden_states),
        )
        if self.pooler == "cls_pooler":
            pooled = out.pooler_output
        else:
            pooled = out.last_hidden_state[:, 0]
        return BiomedCLIPTextOutput(
            text_embeds=self.proj(pooled),
            last_hidden_state=out.last_hidden_state,
            pooler_output=pooled,
            hidden_states=out.hidden_states if output_hidden_states else None,
        )


class BiomedCLIPPreTrainedModel(PreTrainedModel):
    config_class = BiomedCLIPConfig
    base_model_prefix = "biomedclip"
    main_input_name = "pixel_values"
    _no_split_modules = ["Block", "BertLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Random init for modules absent from the weights file (normally none)."""
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        elif isinstance(module, BiomedCLIPModel):
            module.logit_scale.data.fill_(self.config.logit_scale_init_value)


class BiomedCLIPVisionModel(BiomedCLIPPreTrainedModel):
    """The image tower alone (for multimodal LLMs): ``last_hidden_state``, ``hidden_states``,
    ``image_embeds``. Loads from the same folder; the text weights are skipped."""

    _keys_to_ignore_on_load_unexpected = [r"^text\.", r"^logit_scale$"]

    def __init__(self, config: BiomedCLIPConfig):
        super().__init__(config)
        self.visual = BiomedCLIPVisionTower(config.vision_cfg, config.embed_dim)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None, **kwargs
    ) -> BiomedCLIPVisionOutput:
        return self.visual(pixel_values, output_hidden_states=output_hidden_states)


class BiomedCLIPModel(BiomedCLIPPreTrainedModel):
    """Dual encoder: ``visual``, ``text`` and ``logit_scale`` (the released state-dict layout)."""

    main_input_name = "input_ids"

    def __init__(self, config: BiomedCLIPConfig):
        super().__init__(config)
        self.visual = BiomedCLIPVisionTower(config.vision_cfg, config.embed_dim)
        self.text = BiomedCLIPTextTower(config.text_cfg, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    @property
    def vision_model(self) -> BiomedCLIPVisionTower:
        return self.visual

    @property
    def text_model(self) -> BiomedCLIPTextTower:
        return self.text

    def get_input_embeddings(self) -> nn.Module:
        return self.text.transformer.get_input_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """Projected image features ``[B, D]`` (not normalised)."""
        return self.visual(pixel_values).image_embeds

    def get_text_features(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Projected text features ``[B, D]`` (not normalised)."""
        return self.text(input_ids, attention_mask, token_type_ids, position_ids).text_embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BiomedCLIPOutput:
        vision = self.visual(pixel_values, output_hidden_states=output_hidden_states)
        text = self.text(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            output_hidden_states=output_hidden_states,
        )
        image_embeds = F.normalize(vision.image_embeds, dim=-1)
        text_embeds = F.normalize(text.text_embeds, dim=-1)
        logits_per_text = self.logit_scale.exp() * text_embeds @ image_embeds.t()
        logits_per_image = logits_per_text.t()
        loss = None
        if return_loss:
            labels = torch.arange(len(logits_per_image), device=logits_per_image.device)
            loss = (
                F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)
            ) / 2
        return BiomedCLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text,
            vision_model_output=vision,
        )
