"""One contrastive forward/backward, whole batch or GradCache-accumulated.

GradCache (Gao et al. 2021) keeps the contrastive batch whole while holding activations for only
one micro-batch: (1) embed every micro-batch without building a graph, recording the RNG state;
(2) compute the loss on the cached features and backpropagate to them only; (3) re-run each
micro-batch with the same RNG state (same dropout / patch dropout) and backpropagate the cached
feature gradients through it. The parameter gradients equal those of the whole batch at once.
Under DDP, gradients are synchronised only on the last micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Batch = dict[str, Any]
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RngState:
    """The CPU (and current CUDA device's) RNG state, to replay a forward pass exactly."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _forward(model: nn.Module, batch: Batch, sl: slice | None = None):
    pixels, ids, mask = batch["pixels"], batch["input_ids"], batch["attention_mask"]
    if sl is not None:
        pixels, ids, mask = pixels[sl], ids[sl], mask[sl]
    return model(pixels, ids, mask)


def contrastive_backward(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    micro_batch_size: int | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scale_loss: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> torch.Tensor:
    """Forward + backward of the contrastive loss on ``batch``; returns the (detached) loss.

    ``micro_batch_size`` smaller than the batch enables GradCache. ``scale_loss`` is the fp16 loss
    scaler's ``scale`` (identity otherwise). ``model`` may be wrapped in DDP.
    """
    n = batch["pixels"].shape[0]
    if not micro_batch_size or micro_batch_size >= n:
        with autocast():
            img, txt, scale = _forward(model, batch)
            loss = loss_fn(img, txt, scale)
        scale_loss(loss).backward()
        return loss.detach()

    slices = [slice(i, min(i + micro_batch_size, n)) for i in range(0, n, micro_batch_size)]
    device = batch["pixels"].device
    # (1) features without a graph
    states, imgs, txts = [], [], []
    with torch.no_grad():
        for sl in slices:
            states.append(RngState(device))
            with autocast():
                img, txt, scale = _forward(model, batch, sl)
            imgs.append(img)
            txts.append(txt)
    after = RngState(device)
    # (2) the loss on the cached features, backpropagated to them
    img_all = torch.cat(imgs).detach().requires_grad_(True)
    txt_all = torch.cat(txts).detach().requires_grad_(True)
    scale_leaf = scale.detach().requires_grad_(True)
    with autocast():
        loss = loss_fn(img_all, txt_all, scale_leaf)
    scale_loss(loss).backward()
    g_img, g_txt, g_scale = img_all.grad, txt_all.grad, scale_leaf.grad
    # (3) replay each micro-batch and push the cached gradients through it
    no_sync = getattr(model, "no_sync", None)
    for k, (sl, state) in enumerate(zip(slices, states)):
        last = k == len(slices) - 1
        ctx = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with ctx:
            state.restore()
            with autocast():
                img, txt, scale = _forward(model, batch, sl)
            surrogate = (
                (img.float() * g_img[sl].float()).sum()
                + (txt.float() * g_txt[sl].float()).sum()
                + scale.float() * (g_scale.float() / len(slices))
            )
            surrogate.backward()
    after.restore()
    return loss.detach()
