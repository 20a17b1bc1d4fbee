"""CoOp-style learned prompts (Zhou et al. 2022) for few-shot classification.

``M`` context vectors are learned in the BERT tower's input-embedding space; the prompt of class
``c`` is ``[CLS] v_1 ... v_M <tokens of class name c> [SEP]``, fed through
``model.encode_text(inputs_embeds=...)`` (BERT still adds position and token-type embeddings).
The image tower and the whole model stay frozen: the k-shot images are the cached features, so a
step costs one text forward/backward over the C class prompts. The loss is cross-entropy of
``logit_scale * image @ normalise(text).T``; AdamW; the context starts from the word embeddings
of ``init`` ("a photo of a", as in CoOp) when it has ``M`` tokens, else N(0, 0.02).
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
    n_ctx: int = 4
    steps: int = 100
    lr: float = 2e-3
    init: str | None = "a photo of a"


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
        init = torch.randn(m, fixed.shape[-1], generator=gen) * 0.02
        if settings.init:
            init_ids = tokenizer.encode([settings.init])[0][1:-1]
            if len(init_ids) == m:
                with torch.no_grad():
                    init = emb(torch.tensor(init_ids, device=device)).float().cpu()
        self.ctx = torch.nn.Parameter(init.to(device))

    def forward(self) -> torch.Tensor:
        c = self.prefix.shape[0]
        embeds = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(c, -1, -1), self.suffix], 1)
        feats = self.model.encode_text(None, self.mask, inputs_embeds=embeds)
        return F.normalize(feats.float(), dim=-1)


def learn_prompts(
    model, tokenizer, classnames: Sequence[str], X: np.ndarray, y: np.ndarray,
    settings: CoOpSettings | None = None, seed: int = 0,
) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """Train context vectors on features ``X`` / labels ``y``; return the class weights
    ``[C, D]`` and the loss per step."""
    settings = settings or CoOpSettings()
    torch.manual_seed(seed)
    was_training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        learner = PromptLearner(model, tokenizer, classnames, settings, seed)
        opt = torch.optim.AdamW([learner.ctx], lr=settings.lr, weight_decay=0.0)
        feats = torch.from_numpy(np.asarray(X, np.float32)).to(learner.ctx.device)
        target = torch.from_numpy(np.asarray(y, np.int64)).to(learner.ctx.device)
        scale = float(model.logit_scale.detach().exp())
        losses = []
        with torch.enable_grad():
            for _ in range(settings.steps):
                loss = F.cross_entropy(scale * feats @ learner().T, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        with torch.no_grad():
            weights = learner().cpu().numpy()
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
    return weights, losses


def coop_few_shot(
    model, tokenizer, train: Features, test: Features, classnames: Sequence[str],
    shots: Sequence[int] = SHOTS, seeds: Sequence[int] = SEEDS,
    settings: CoOpSettings | None = None, model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES,
) -> list[EvalResult]:  # fmt: skip
    """One :class:`EvalResult` per k (``task="coop"``): mean and ``*_std`` over ``seeds``."""
    settings = settings or CoOpSettings()
    scale = float(model.logit_scale.detach().exp())
    out = []
    for k in shots:
        per_seed, first_losses, final_losses = [], [], []
        for s in seeds:
            idx = sample_shots(train.labels, k, s)
            w, losses = learn_prompts(
                model, tokenizer, classnames, train.embeddings[idx], train.labels[idx], settings, s
            )
            per_seed.append(softmax(scale * test.embeddings @ w.T))
            first_losses.append(losses[0] if losses else float("nan"))
            final_losses.append(losses[-1] if losses else float("nan"))
        cfg = {"k": k, "seeds": list(seeds), "method": "coop", "n_ctx": settings.n_ctx,
               "steps": settings.steps, "lr": settings.lr, "first_loss": first_losses,
               "final_loss": final_losses}  # fmt: skip
        out.append(
            summarise_seeds(
                test.dataset, "coop", model_name, test, per_seed, cfg, n_resamples, seeds[0]
            )
        )
    return out
