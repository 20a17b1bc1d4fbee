"""CoOp learned prompts (Zhou et al., IJCV 2022) for few-shot classification, as published.

``M`` context vectors (16 by default) are learned in the BERT tower's input-embedding space; the
prompt of class ``c`` is ``[CLS] v_1 ... v_M <tokens of class name c> [SEP]`` (class token at the
end), fed through ``model.encode_text(inputs_embeds=...)`` (BERT still adds position and
token-type embeddings). One context shared by all classes (unified), or one per class
(``class_specific``, CoOp's CSC). Context vectors start from N(0, 0.02) (CoOp's default for 16
tokens) or from the word embeddings of ``init`` when it has exactly ``M`` tokens.

The recipe is CoOp's: SGD (lr 0.002, momentum 0.9, weight decay 5e-4), batch 32, cosine decay
over the run after one warm-up epoch at a constant 1e-5, for 50 epochs at 1-2 shots, 100 at 4-8
and 200 at 16 (:func:`epochs_for`). The image tower and the model stay frozen: the k-shot images
are the cached features, so a step costs one text forward/backward over the class prompts. The
loss is cross-entropy of ``logit_scale * image @ normalise(text).T``. Model selection: with a
validation split, ``min(k, 4)`` images per class are drawn from it (CoOp's few-shot validation)
and the context of the epoch with the best validation accuracy is kept; among epochs tied on
accuracy (common with 4 images per class), the one with the lowest validation loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.features import Features
from biomedclip.eval.fewshot import SEEDS, SHOTS, sample_shots, summarise_seeds
from biomedclip.eval.results import EvalResult
from biomedclip.eval.zeroshot_eval import softmax


@dataclass
class CoOpSettings:
    n_ctx: int = 16
    epochs: int | None = None  # None: by shot count (epochs_for)
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    warmup_lr: float = 1e-5  # constant for the first epoch
    class_specific: bool = False
    init: str | None = None  # e.g. "a photo of a" (used when it has exactly n_ctx tokens)
    max_steps: int | None = None  # a cap on optimisation steps (tests, quick runs)


def epochs_for(k: int) -> int:
    """CoOp's epochs by shot count: 50 (1-2 shots), 100 (4-8), 200 (16 and more)."""
    return 50 if k <= 2 else 100 if k <= 8 else 200


class PromptLearner(torch.nn.Module):
    """Learnable context + fixed class-name tokens -> unit class embeddings ``[C, D]``."""

    def __init__(
        self, model, tokenizer, classnames: Sequence[str], settings: CoOpSettings, seed: int
    ):
        super().__init__()
        self.model = model
        emb = model.text.transformer.get_input_embeddings()
        m = settings.n_ctx
        limit = tokenizer.context_length
        rows = []
        for ids in tokenizer.encode(list(classnames)):
            name = ids[1:-1][: max(0, limit - m - 2)]
            rows.append([tokenizer.cls_id] + [tokenizer.pad_id] * m + name + [tokenizer.sep_id])
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        device = next(model.parameters()).device
        with torch.no_grad():
            fixed = emb(ids.to(device)).float()
        self.register_buffer("prefix", fixed[:, :1].clone())
        self.register_buffer("suffix", fixed[:, 1 + m :].clone())
        self.register_buffer("mask", mask.to(device))
        gen = torch.Generator().manual_seed(seed)
        n_sets = len(rows) if settings.class_specific else 1
        init = torch.randn(n_sets, m, fixed.shape[-1], generator=gen) * 0.02
        if settings.init:
            init_ids = tokenizer.encode([settings.init])[0][1:-1]
            if len(init_ids) == m:
                with torch.no_grad():
                    words = emb(torch.tensor(init_ids, device=device)).float().cpu()
                init = words.unsqueeze(0).repeat(n_sets, 1, 1)
        self.ctx = torch.nn.Parameter(
            init.to(device) if settings.class_specific else init[0].to(device)
        )

    def forward(self) -> torch.Tensor:
        c = self.prefix.shape[0]
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(c, -1, -1)
        embeds = torch.cat([self.prefix, ctx, self.suffix], 1)
        feats = self.model.encode_text(None, self.mask, inputs_embeds=embeds)
        return F.normalize(feats.float(), dim=-1)


def learn_prompts(
    model, tokenizer, classnames: Sequence[str], X: np.ndarray, y: np.ndarray,
    settings: CoOpSettings | None = None, seed: int = 0,
    X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
) -> tuple[np.ndarray, list[float], dict]:  # fmt: skip
    """Train context vectors on features ``X`` / labels ``y`` (CoOp's recipe); return the class
    weights ``[C, D]`` (of the best validation epoch when ``X_val`` is given, else the last),
    the loss per step and a summary (epochs, steps, best epoch, validation accuracies)."""
    settings = settings or CoOpSettings()
    torch.manual_seed(seed)
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    k = int(np.bincount(np.asarray(y)).max()) if len(y) else 1
    epochs = settings.epochs or epochs_for(k)
    n = len(y)
    per_epoch = max(1, -(-n // settings.batch_size))
    total = epochs * per_epoch
    if settings.max_steps:
        total = min(total, settings.max_steps)
    try:
        learner = PromptLearner(model, tokenizer, classnames, settings, seed)
        dev = learner.ctx.device
        opt = torch.optim.SGD([learner.ctx], lr=settings.lr, momentum=settings.momentum,
                              weight_decay=settings.weight_decay)  # fmt: skip
        after = max(1, total - per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda step: (
                settings.warmup_lr / settings.lr
                if step < per_epoch and total > per_epoch
                else 0.5 * (1 + np.cos(np.pi * min(1.0, (step - per_epoch) / after)))
            ),
        )
        feats = torch.from_numpy(np.asarray(X, np.float32)).to(dev)
        target = torch.from_numpy(np.asarray(y, np.int64)).to(dev)
        val = None
        if X_val is not None and y_val is not None and len(y_val):
            val = (torch.from_numpy(np.asarray(X_val, np.float32)).to(dev),
                   torch.from_numpy(np.asarray(y_val, np.int64)).to(dev))  # fmt: skip
        scale = float(model.logit_scale.detach().exp())
        gen = torch.Generator().manual_seed(seed)
        losses, val_acc, val_losses = [], [], []
        best = ((-1.0, 0.0), None, 0)
        step = 0
        with torch.enable_grad():
            for epoch in range(epochs):
                order = torch.randperm(n, generator=gen).to(dev)
                for start in range(0, n, settings.batch_size):
                    if step >= total:
                        break
                    b = order[start : start + settings.batch_size]
                    loss = F.cross_entropy(scale * feats[b] @ learner().T, target[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    step += 1
                if val is not None:
                    with torch.no_grad():
                        w = learner()
                        logits = scale * val[0] @ w.T
                        acc = float((logits.argmax(1) == val[1]).float().mean())
                        val_loss = float(F.cross_entropy(logits, val[1]))
                    val_acc.append(acc)
                    val_losses.append(val_loss)
                    # a few shots per class make ties in accuracy common: the lower loss breaks
                    # them (the first of the tied epochs is the least trained)
                    if (acc, -val_loss) > best[0]:
                        best = ((acc, -val_loss), w.detach().cpu().numpy(), epoch + 1)
                if step >= total:
                    break
        with torch.no_grad():
            last = learner().cpu().numpy()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
    weights = best[1] if best[1] is not None else last
    info = {"epochs": epoch + 1, "steps": step, "best_epoch": best[2] if val is not None else None,
            "val_accuracy": val_acc, "val_loss": val_losses}  # fmt: skip
    return weights, losses, info


def coop_few_shot(
    model, tokenizer, train: Features, test: Features, classnames: Sequence[str],
    shots: Sequence[int] = SHOTS, seeds: Sequence[int] = SEEDS,
    settings: CoOpSettings | None = None, model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES, val: Features | None = None,
) -> list[EvalResult]:  # fmt: skip
    """One :class:`EvalResult` per k (``task="coop"``): mean and ``*_std`` over ``seeds``."""
    settings = settings or CoOpSettings()
    scale = float(model.logit_scale.detach().exp())
    out = []
    for k in shots:
        per_seed, first_losses, final_losses, infos = [], [], [], []
        for s in seeds:
            idx = sample_shots(train.labels, k, s)
            vx = vy = None
            if val is not None:
                vidx = sample_shots(val.labels, min(k, 4), s + 10_000)
                vx, vy = val.embeddings[vidx], val.labels[vidx]
            w, losses, info = learn_prompts(
                model, tokenizer, classnames, train.embeddings[idx], train.labels[idx], settings,
                s, vx, vy,
            )  # fmt: skip
            per_seed.append(softmax(scale * test.embeddings @ w.T))
            first_losses.append(losses[0] if losses else float("nan"))
            final_losses.append(losses[-1] if losses else float("nan"))
            infos.append(info)
        cfg = {"k": k, "seeds": list(seeds), "method": "coop", "n_ctx": settings.n_ctx,
               "class_specific": settings.class_specific, "optimizer": "SGD momentum 0.9",
               "lr": settings.lr, "schedule": "cosine, 1 warm-up epoch at 1e-5",
               "batch_size": settings.batch_size, "epochs": [i["epochs"] for i in infos],
               "steps": [i["steps"] for i in infos],
               "selection": "best val epoch: accuracy, then loss (min(k, 4) per class)" if val is not None else "last",
               "best_epoch": [i["best_epoch"] for i in infos],
               "first_loss": first_losses, "final_loss": final_losses}  # fmt: skip
        out.append(
            summarise_seeds(
                test.dataset, "coop", model_name, test, per_seed, cfg, n_resamples, seeds[0]
            )
        )
    return out
