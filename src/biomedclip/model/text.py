"""Text tower: BERT without pooler, CLS of the last hidden state, MLP projection.

Keys: ``transformer.*`` (a transformers ``BertModel``) and ``proj.0`` / ``proj.2`` (two bias-free
linears around an exact GELU), as in the released checkpoint.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from biomedclip.config import TextConfig

POOLERS = ("cls_last_hidden_state_pooler", "cls_pooler")


def build_bert(cfg: TextConfig) -> BertModel:
    """A randomly initialised ``BertModel`` from the embedded architecture (no network).

    The BERT pooler (dense + tanh) exists only for ``cls_pooler`` configs, whose embedding is the
    pooler output (open_clip's ``ClsPooler``); the released ``cls_last_hidden_state_pooler`` reads
    the [CLS] state of the last layer and its checkpoint's unused pooler weights are dropped.
    """
    hf_cfg = HFBertConfig(**dataclasses.asdict(cfg.bert))
    return BertModel(hf_cfg, add_pooling_layer=cfg.pooler == "cls_pooler")


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        if cfg.pooler not in POOLERS:
            raise ValueError(f"unknown text pooler {cfg.pooler!r} (use one of {POOLERS})")
        self.pooler = cfg.pooler
        self.transformer = build_bert(cfg)
        width = cfg.bert.hidden_size
        if cfg.proj == "mlp":
            hidden = (width + embed_dim) // 2
            self.proj = nn.Sequential(
                nn.Linear(width, hidden, bias=False),
                nn.GELU(),
                nn.Linear(hidden, embed_dim, bias=False),
            )
        elif cfg.proj == "linear":
            self.proj = nn.Linear(width, embed_dim, bias=False)
        else:
            raise ValueError(f"unknown text projection {cfg.proj!r}")
        self.pad_token_id = cfg.bert.pad_token_id
        self.context_length = cfg.context_length

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        return_tokens: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Projected text features ``[B, D]`` (and the last hidden states ``[B, L, width]``).

        ``inputs_embeds`` replaces the word embeddings (BERT still adds position and token-type
        embeddings), for prompt learning; then ``attention_mask`` defaults to all ones.
        """
        if attention_mask is None:
            if input_ids is None:
                attention_mask = torch.ones(inputs_embeds.shape[:2], device=inputs_embeds.device)
            else:
                attention_mask = (input_ids != self.pad_token_id).long()
        out = self.transformer(
            input_ids=None if inputs_embeds is not None else input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
        )
        pooled = out.pooler_output if self.pooler == "cls_pooler" else out.last_hidden_state[:, 0]
        features = self.proj(pooled)
        return (features, out.last_hidden_state) if return_tokens else features

    def reset_non_persistent_buffers(self) -> None:
        """Re-create the buffers that are not in the state dict (after a meta-device build)."""
        emb = self.transformer.embeddings
        for name in ("position_ids", "token_type_ids"):
            buf = getattr(emb, name, None)
            if buf is None:
                continue
            n = buf.shape[-1]
            value = (
                torch.arange(n).expand((1, -1))
                if name == "position_ids"
                else torch.zeros((1, n), dtype=torch.long)
            )
            emb.register_buffer(name, value.clone(), persistent=False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.transformer.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            self.transformer.gradient_checkpointing_disable()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.encoder.layer
