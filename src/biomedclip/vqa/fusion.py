"""The METER / M3AE co-attention fusion module and the VQA answer head.

Each of the two streams (question tokens, image tokens) is projected to a common width, tagged
with a token-type embedding (0 text, 1 image) and passed through ``layers`` co-attention layers.
A layer of one stream is BERT-style (post-norm): self-attention, cross-attention to the *other*
stream's previous states, feed-forward, each with a residual and LayerNorm; both streams update
in parallel from the previous layer's states. Each stream's first token ([CLS]) is pooled
(Linear + tanh), the two pooled vectors are concatenated, and the head
(Linear -> LayerNorm -> GELU -> Linear) scores every answer of the vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from biomedclip.vqa.config import FusionConfig


def init_weights(module: nn.Module) -> None:
    """BERT initialisation: N(0, 0.02) linears and embeddings, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


class CoAttentionLayer(nn.Module):
    """Self-attention, cross-attention to the other stream, feed-forward (post-norm)."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        h, p = cfg.hidden, cfg.dropout
        self.self_attn = nn.MultiheadAttention(h, cfg.heads, dropout=p, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(h, cfg.heads, dropout=p, batch_first=True)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(h), nn.LayerNorm(h), nn.LayerNorm(h)
        inner = int(h * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(h, inner), nn.GELU(), nn.Linear(inner, h))
        self.drop = nn.Dropout(p)

    def forward(
        self,
        x: torch.Tensor,
        other: torch.Tensor,
        x_pad: torch.Tensor | None,
        other_pad: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` [B, Lx, H] attends to itself and to ``other`` [B, Lo, H]; ``*_pad`` True = padding."""
        a, _ = self.self_attn(x, x, x, key_padding_mask=x_pad, need_weights=False)
        x = self.norm1(x + self.drop(a))
        a, _ = self.cross_attn(x, other, other, key_padding_mask=other_pad, need_weights=False)
        x = self.norm2(x + self.drop(a))
        return self.norm3(x + self.drop(self.mlp(x)))


class Pooler(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(states[:, 0]))


class FusionEncoder(nn.Module):
    """Projections, token types, ``layers`` co-attention layers per stream and the two poolers."""

    def __init__(self, cfg: FusionConfig, text_width: int, image_width: int):
        super().__init__()
        h = cfg.hidden
        self.text_proj = nn.Linear(text_width, h)
        self.image_proj = nn.Linear(image_width, h)
        self.token_type = nn.Embedding(2, h)
        self.text_layers = nn.ModuleList(CoAttentionLayer(cfg) for _ in range(cfg.layers))
        self.image_layers = nn.ModuleList(CoAttentionLayer(cfg) for _ in range(cfg.layers))
        self.text_pooler, self.image_pooler = Pooler(h), Pooler(h)
        self.grad_checkpointing = False
        self.apply(init_weights)

    def forward(
        self, text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        """Text states [B, L, Wt] (``text_mask`` 1 = token), image tokens [B, N, Wi] -> [B, 2H]."""
        t = self.text_proj(text) + self.token_type.weight[0]
        v = self.image_proj(image) + self.token_type.weight[1]
        t_pad = text_mask == 0
        for t_layer, v_layer in zip(self.text_layers, self.image_layers):
            if self.grad_checkpointing and self.training:
                from torch.utils.checkpoint import checkpoint

                t_new = checkpoint(t_layer, t, v, t_pad, None, use_reentrant=False)
                v_new = checkpoint(v_layer, v, t, None, t_pad, use_reentrant=False)
            else:
                t_new, v_new = t_layer(t, v, t_pad, None), v_layer(v, t, None, t_pad)
            t, v = t_new, v_new
        return torch.cat([self.text_pooler(t), self.image_pooler(v)], dim=-1)


class AnswerHead(nn.Sequential):
    """Linear(2H, 2H) -> LayerNorm -> GELU -> Linear(2H, n_answers)."""

    def __init__(self, hidden: int, n_answers: int):
        super().__init__(
            nn.Linear(2 * hidden, 2 * hidden),
            nn.LayerNorm(2 * hidden),
            nn.GELU(),
            nn.Linear(2 * hidden, n_answers),
        )
        self.apply(init_weights)
