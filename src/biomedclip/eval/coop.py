"""CoOp learned prompts (Zhou et al., IJCV 2022) for few-shot classification, as published.

``M`` context vectors (16 by default) are learned in the text tower's input-embedding space; the
prompt of class ``c`` is ``<start> v_1 ... v_M <tokens of "name.">  <end>`` (class token at the
end, the name followed by ".", as CoOp's ``prompt_prefix + " " + name + "."``), fed through the
text tower from its input embeddings (position embeddings still added). One context shared by all
classes (unified), or one per class (``class_specific``, CoOp's CSC). Context vectors start from
N(0, 0.02) (CoOp's default for 16 tokens) or from the word embeddings of ``init`` when it has
exactly ``M`` tokens. Text towers (:func:`prompt_tower`): BiomedCLIP's BERT (``inputs_embeds``)
and open_clip's CLIP text transformer (``open_clip:`` baselines); anything else (transformers
``hf:`` baselines, open_clip models with a Hugging Face text tower) is refused before any work,
naming what is missing.

The recipe is CoOp's (``configs/trainers/CoOp/*.yaml`` on Dassl): SGD (lr 0.002, momentum 0.9,
weight decay 5e-4), batch 32, one warm-up epoch at a constant 1e-5, then cosine decay stepped
once per epoch (Dassl's ``ConstantWarmupScheduler`` over ``CosineAnnealingLR(T_max=epochs)``,
``update_lr`` after an epoch's last batch: epoch ``e >= 1`` runs at
``0.001 * (1 + cos(pi * (e - 1) / epochs))``); 50 epochs at 1-2 shots, 100 at 4-8 and 200 at 16
(:func:`epochs_for`). Model selection as published: the context after the LAST epoch (Dassl's
``TEST.FINAL_MODEL = "last_step"``, CoOp's default). ``select="best-val"`` (a deviation, reported
as such) keeps the epoch of the best accuracy on ``min(k, 4)`` validation images per class
instead, ties broken by the lower validation loss. The image tower and the model stay frozen:
the k-shot images are the cached features, so a step costs one text forward/backward over the
class prompts. The loss is cross-entropy of ``logit_scale * image @ normalise(text).T``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from biomedclip.errors import InputError
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
    select: str = "last"  # "last" (published) or "best-val" (a deviation)
    suffix: str = "."  # after the class name, as CoOp's prompts


SELECTIONS = ("last", "best-val")
PUBLISHED_SELECTION = "last epoch (CoOp / Dassl TEST.FINAL_MODEL = last_step)"


def epoch_lr(epoch: int, epochs: int, settings: CoOpSettings) -> float:
    """The learning rate of ``epoch`` (0-based): Dassl's constant warm-up epoch, then cosine
    annealing over ``epochs`` stepped once per epoch."""
    if epoch == 0:
        return settings.warmup_lr
    return 0.5 * settings.lr * (1 + float(np.cos(np.pi * (epoch - 1) / epochs)))


def epochs_for(k: int) -> int:
    """CoOp's epochs by shot count: 50 (1-2 shots), 100 (4-8), 200 (16 and more)."""
    return 50 if k <= 2 else 100 if k <= 8 else 200


class _BertTower:
    """BiomedCLIP's text tower: BERT from ``inputs_embeds``."""

    def __init__(self, model, tokenizer):
        self.model, self.tok = model, tokenizer
        self.embed = model.text.transformer.get_input_embeddings()

    def rows(self, classnames: Sequence[str], m: int, suffix: str) -> list[list[int]]:
        limit, tok = self.tok.context_length, self.tok
        rows = []
        for ids in tok.encode([f"{name}{suffix}" for name in classnames]):
            name = ids[1:-1][: max(0, limit - m - 2)]
            rows.append([tok.cls_id] + [tok.pad_id] * m + name + [tok.sep_id])
        return rows

    def pad(self, width: int) -> tuple[int, int]:
        return self.tok.pad_id, width

    def words(self, text: str) -> list[int]:
        return self.tok.encode([text])[0][1:-1]

    def encode(self, embeds, ids, mask):
        return self.model.encode_text(None, mask, inputs_embeds=embeds)


class _OpenClipTower:
    """open_clip's CLIP text transformer from token embeddings (open_clip's ``encode_text``
    with the embedding lookup replaced, as CoOp's ``TextEncoder``)."""

    NEEDS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")

    def __init__(self, model, tokenizer):
        self.model, self.tok = model, tokenizer
        self.embed = model.token_embedding

    def rows(self, classnames: Sequence[str], m: int, suffix: str) -> list[list[int]]:
        limit, tok = self.tok.context_length, self.tok
        return [
            [tok.sot_token_id] + [0] * m + tok.encode(f"{name}{suffix}")[: max(0, limit - m - 2)]
            + [tok.eot_token_id]
            for name in classnames
        ]  # fmt: skip

    def pad(self, width: int) -> tuple[int, int]:
        return 0, self.tok.context_length  # the causal mask is context_length long

    def words(self, text: str) -> list[int]:
        return self.tok.encode(text)

    def encode(self, embeds, ids, mask):
        from open_clip.transformer import text_global_pool

        model = self.model
        cast = model.transformer.get_cast_dtype()
        x = embeds.to(cast) + model.positional_embedding.to(cast)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        x = text_global_pool(x, ids, getattr(model, "text_pool_type", "argmax"),
                             eos_token_id=getattr(model, "text_eos_id", None))  # fmt: skip
        proj = model.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def prompt_tower(model, tokenizer, label: str = "", n_ctx: int | None = None):
    """The text tower CoOp learns prompts through, or :class:`InputError` naming what is missing
    (raised before any work: :func:`biomedclip.eval.runner.run_coop` asks first); with ``n_ctx``,
    also refused when the tower's context cannot hold that many context vectors and a name."""
    tower = _tower(model, tokenizer, label or type(model).__name__)
    limit = int(tower.tok.context_length)
    if n_ctx is not None and n_ctx + 3 > limit:
        raise InputError(
            f"{label or type(model).__name__}: {n_ctx} CoOp context vectors need a text context of "
            f"at least {n_ctx + 3} tokens (start, context, a name token, end); this text tower "
            f"takes {limit}: use --coop-ctx {max(1, limit - 3)} or fewer"
        )
    return tower


def _tower(model, tokenizer, name: str):
    if hasattr(getattr(model, "text", None), "transformer") and hasattr(tokenizer, "cls_id"):
        return _BertTower(model, tokenizer)
    kind = getattr(tokenizer, "kind", None)
    raw = getattr(tokenizer, "fn", tokenizer)
    if kind == "hf":
        raise InputError(
            f"{name}: CoOp is not available for transformers (hf:) baselines: it feeds learned "
            "context vectors through the text tower's input embeddings, which this harness "
            "does only for BiomedCLIP and open_clip CLIP models (use --method linear-probe, or "
            "the model as an open_clip: spec)"
        )
    missing = [a for a in _OpenClipTower.NEEDS if not hasattr(model, a)]
    missing += [f"tokenizer.{a}" for a in ("sot_token_id", "eot_token_id", "context_length",
                                             "encode") if not hasattr(raw, a)]  # fmt: skip
    if kind == "open_clip" and not missing:
        return _OpenClipTower(model, raw)
    raise InputError(
        f"{name}: CoOp needs a BiomedCLIP text tower or an open_clip CLIP text transformer "
        f"with its token embedding; missing: {', '.join(missing) or 'a known tokenizer'}"
    )


class PromptLearner(torch.nn.Module):
    """Learnable context + fixed class-name tokens -> unit class embeddings ``[C, D]``."""

    def __init__(
        self, model, tokenizer, classnames: Sequence[str], settings: CoOpSettings, seed: int
    ):
        super().__init__()
        self.tower = prompt_tower(model, tokenizer, n_ctx=settings.n_ctx)
        m = settings.n_ctx
        rows = self.tower.rows(classnames, m, settings.suffix)
        pad_id, width = self.tower.pad(max(len(r) for r in rows))
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        device = next(model.parameters()).device
        with torch.no_grad():
            fixed = self.tower.embed(ids.to(device)).float()
        self.register_buffer("prefix", fixed[:, :1].clone())
        self.register_buffer("suffix", fixed[:, 1 + m :].clone())
        self.register_buffer("mask", mask.to(device))
        self.register_buffer("ids", ids.to(device))
        gen = torch.Generator().manual_seed(seed)
        n_sets = len(rows) if settings.class_specific else 1
        init = torch.randn(n_sets, m, fixed.shape[-1], generator=gen) * 0.02
        if settings.init:
            init_ids = self.tower.words(settings.init)
            if len(init_ids) == m:
                with torch.no_grad():
                    words = self.tower.embed(torch.tensor(init_ids, device=device)).float().cpu()
                init = words.unsqueeze(0).repeat(n_sets, 1, 1)
        self.ctx = torch.nn.Parameter(
            init.to(device) if settings.class_specific else init[0].to(device)
        )

    def forward(self) -> torch.Tensor:
        c = self.prefix.shape[0]
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(c, -1, -1)
        embeds = torch.cat([self.prefix, ctx, self.suffix], 1)
        feats = self.tower.encode(embeds, self.ids, self.mask)
        return F.normalize(feats.float(), dim=-1)


def learn_prompts(
    model, tokenizer, classnames: Sequence[str], X: np.ndarray, y: np.ndarray,
    settings: CoOpSettings | None = None, seed: int = 0,
    X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
) -> tuple[np.ndarray, list[float], dict]:  # fmt: skip
    """Train context vectors on features ``X`` / labels ``y`` (CoOp's recipe); return the class
    weights ``[C, D]`` (after the last epoch; of the best validation epoch with
    ``select="best-val"`` and ``X_val``), the loss per step and a summary (epochs, steps, best
    epoch, validation accuracies, learning rate per epoch)."""
    settings = settings or CoOpSettings()
    if settings.select not in SELECTIONS:
        raise InputError(f"CoOp selection {settings.select!r}: use {' or '.join(SELECTIONS)}")
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
        feats = torch.from_numpy(np.asarray(X, np.float32)).to(dev)
        target = torch.from_numpy(np.asarray(y, np.int64)).to(dev)
        val = None
        if settings.select == "best-val" and X_val is not None and y_val is not None and len(y_val):
            val = (torch.from_numpy(np.asarray(X_val, np.float32)).to(dev),
                   torch.from_numpy(np.asarray(y_val, np.int64)).to(dev))  # fmt: skip
        scale = float(model.logit_scale.detach().exp())
        gen = torch.Generator().manual_seed(seed)
        losses, val_acc, val_losses, lrs = [], [], [], []
        best = ((-1.0, 0.0), None, 0)
        step = 0
        with torch.enable_grad():
            for epoch in range(epochs):
                lr = epoch_lr(epoch, epochs, settings)  # stepped once per epoch, as Dassl
                for group in opt.param_groups:
                    group["lr"] = lr
                lrs.append(lr)
                order = torch.randperm(n, generator=gen).to(dev)
                for start in range(0, n, settings.batch_size):
                    if step >= total:
                        break
                    b = order[start : start + settings.batch_size]
                    loss = F.cross_entropy(scale * feats[b] @ learner().T, target[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
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
            "val_accuracy": val_acc, "val_loss": val_losses, "lr": lrs,
            "selection": "best-val" if val is not None else "last"}  # fmt: skip
    return weights, losses, info


def coop_few_shot(
    model, tokenizer, train: Features, test: Features, classnames: Sequence[str],
    shots: Sequence[int] = SHOTS, seeds: Sequence[int] = SEEDS,
    settings: CoOpSettings | None = None, model_name: str = "",
    n_resamples: int = DEFAULT_RESAMPLES, val: Features | None = None,
) -> list[EvalResult]:  # fmt: skip
    """One :class:`EvalResult` per k (``task="coop"``): mean and ``*_std`` over ``seeds``.
    ``val`` is used only with ``settings.select == "best-val"`` (reported as a deviation)."""
    settings = settings or CoOpSettings()
    prompt_tower(model, tokenizer, model_name, settings.n_ctx)  # refuse before any work
    scale = float(model.logit_scale.detach().exp())
    out = []
    for k in shots:
        per_seed, first_losses, final_losses, infos = [], [], [], []
        for s in seeds:
            idx = sample_shots(train.labels, k, s)
            vx = vy = None
            if val is not None and settings.select == "best-val":
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
               "lr": settings.lr, "schedule": f"1 warm-up epoch at {settings.warmup_lr:g}, then "
               "cosine stepped per epoch", "suffix": settings.suffix,
               "batch_size": settings.batch_size, "epochs": [i["epochs"] for i in infos],
               "steps": [i["steps"] for i in infos], "best_epoch": [i["best_epoch"] for i in infos],
               "first_loss": first_losses, "final_loss": final_losses}  # fmt: skip
        if all(i["selection"] == "best-val" for i in infos):
            cfg["selection"] = "best val epoch: accuracy, then loss (min(k, 4) per class)"
            cfg["deviations"] = [f"model selection: best validation epoch (published: "
                                 f"{PUBLISHED_SELECTION})"]  # fmt: skip
        else:
            cfg["selection"] = PUBLISHED_SELECTION
            if settings.select == "best-val":
                cfg["deviations"] = ["best-val selection asked for, but no validation split: "
                                     "the last epoch was kept"]  # fmt: skip
        out.append(
            summarise_seeds(
                test.dataset, "coop", model_name, test, per_seed, cfg, n_resamples, seeds[0]
            )
        )
    return out
