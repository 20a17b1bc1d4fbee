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


def build_bert(cfg: TextConfig) -> BertModel:
    """A randomly initialised ``BertModel`` from the embedded architecture (no network)."""
    hf_cfg = HFBertConfig(**dataclasses.asdict(cfg.bert))
    return BertModel(hf_cfg, add_pooling_layer=False)


class TextTower(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
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
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_token_id).long()
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return self.proj(out.last_hidden_state[:, 0, :])

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
