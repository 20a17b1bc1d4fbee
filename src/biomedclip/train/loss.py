"""Symmetric InfoNCE (the CLIP loss), sharded over processes.

With ``W`` processes each holding ``B`` pairs, features are all-gathered. ``gather_with_grad`` uses
the differentiable all-gather, whose backward sums each rank's gradient back to the owner: with DDP's
gradient averaging, the parameter gradients then equal those of one process holding all ``W*B``
pairs (tested). Without it, the other ranks' features are constants and only the local slice
carries gradient: cheaper, but not the single-process gradient (open_clip's behaviour too).
``local_loss`` computes only this rank's ``B`` rows of each
logit matrix against all ``W*B`` columns (memory O(B*W*B) instead of O((W*B)^2)); averaged over
ranks it is the same loss.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    gather_with_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All processes' features concatenated in rank order (the local ones when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return image_features, text_features
    if gather_with_grad:
        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():  # deprecated in favour of a private API; works on gloo
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(all_gather(image_features), 0), torch.cat(all_gather(text_features), 0)
    world, rank = dist.get_world_size(), dist.get_rank()
    gathered_img = [torch.zeros_like(image_features) for _ in range(world)]
    gathered_txt = [torch.zeros_like(text_features) for _ in range(world)]
    dist.all_gather(gathered_img, image_features.detach())
    dist.all_gather(gathered_txt, text_features.detach())
    gathered_img[rank] = image_features  # keep the local slice differentiable
    gathered_txt[rank] = text_features
    return torch.cat(gathered_img, 0), torch.cat(gathered_txt, 0)


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    local_loss: bool = False,
    gather_with_grad: bool = True,
) -> torch.Tensor:
    """Symmetric cross-entropy over image->text and text->image logits (features unit-norm)."""
    image_features = image_features.float()
    text_features = text_features.float()
    logit_scale = logit_scale.float()
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed:
        logits = logit_scale * image_features @ text_features.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    all_img, all_txt = gather_features(image_features, text_features, gather_with_grad)
    n = image_features.shape[0]
    if local_loss:
        logits_img = logit_scale * image_features @ all_txt.T
        logits_txt = logit_scale * text_features @ all_img.T
        labels = torch.arange(n, device=logits_img.device) + n * dist.get_rank()
    else:
        logits_img = logit_scale * all_img @ all_txt.T
        logits_txt = logits_img.T
        labels = torch.arange(logits_img.shape[0], device=logits_img.device)
    return (F.cross_entropy(logits_img, labels) + F.cross_entropy(logits_txt, labels)) / 2


class ClipLoss(nn.Module):
    """:func:`clip_loss` as a module (options fixed at construction)."""

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = True):
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        return clip_loss(
            image_features, text_features, logit_scale, self.local_loss, self.gather_with_grad
        )


@torch.no_grad()
def clamp_logit_scale(model: nn.Module, max_scale: float = 100.0) -> None:
    """Keep ``exp(logit_scale) <= max_scale`` (the temperature >= 1/100), after each step."""
    model.logit_scale.clamp_(0, torch.log(torch.tensor(max_scale)).item())
