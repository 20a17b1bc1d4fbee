"""Child process of the distributed-equivalence test: one gloo rank computes loss and gradients."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file


def tiny_model():
    from biomedclip.config import ModelConfig
    from biomedclip.model import BiomedCLIP

    cfg = ModelConfig.tiny(vocab_size=64)
    cfg.text.bert.hidden_dropout_prob = 0.0
    cfg.text.bert.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    return BiomedCLIP(cfg)


def fixed_batch(n: int):
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(5, 64, (n, 12), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    mask[n // 2 :, 9:] = 0  # some padding
    return {
        "pixels": torch.randn(n, 3, 32, 32, generator=g),
        "input_ids": ids,
        "attention_mask": mask,
    }


VARIANTS = (
    ("global", dict(local_loss=False), None),
    ("local", dict(local_loss=True), None),
    ("gradcache", dict(local_loss=False), 3),
)


def compute(model, batch, local_loss: bool, micro: int | None):
    from biomedclip.train.gradcache import contrastive_backward
    from biomedclip.train.loss import ClipLoss

    model.zero_grad(set_to_none=True)
    loss = contrastive_backward(model, batch, ClipLoss(local_loss=local_loss), micro)
    return loss


def main(rank: int, world: int, init_file: str, out_dir: str, batch_per_rank: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    from torch.nn.parallel import DistributedDataParallel as DDP

    from biomedclip.train.distributed import all_reduce_mean

    full = fixed_batch(batch_per_rank * world)
    mine = {k: v[rank * batch_per_rank : (rank + 1) * batch_per_rank] for k, v in full.items()}
    for name, kw, micro in VARIANTS:
        model = tiny_model()
        ddp = DDP(model)
        loss = compute(ddp, mine, kw["local_loss"], micro)
        loss = all_reduce_mean(loss)
        if rank == 0:
            tensors = {
                f"grad.{k}": p.grad for k, p in model.named_parameters() if p.grad is not None
            }
            tensors["loss"] = loss.reshape(1)
            save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    r, w, f, o, b = sys.argv[1:]
    main(int(r), int(w), f, o, int(b))
