"""Validation during training: contrastive loss, retrieval Recall@1/5/10, optional zero-shot accuracy.

Runs on one process over a held-out shard set or table (deterministic eval transform). The loss is
the mean of per-batch losses (as open_clip reports it: it depends on the batch size); retrieval
ranks each image among all validation texts and vice versa with
:func:`biomedclip.eval.retrieval.retrieval_metrics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from biomedclip.eval.retrieval import retrieval_metrics
from biomedclip.model import BiomedCLIP
from biomedclip.tokenizer import Tokenizer
from biomedclip.train.data import eval_batches
from biomedclip.transforms import eval_transform


def evaluate(
    model: BiomedCLIP,
    tokenizer: Tokenizer,
    data_cfg,
    spec,
    batch_size: int,
    max_samples: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    zeroshot_labels: list[str] | None = None,
) -> dict[str, float]:
    """Validation metrics (``val_loss``, ``val_image_to_text_R@1`` ...) on up to ``max_samples`` pairs."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _evaluate(
                model,
                tokenizer,
                data_cfg,
                spec,
                batch_size,
                max_samples,
                device,
                autocast,
                zeroshot_labels,
            )
    finally:
        model.train(was_training)


def _evaluate(
    model, tokenizer, data_cfg, spec, batch_size, max_samples, device, autocast, zeroshot_labels
):
    transform = eval_transform(model.config.preprocess)
    imgs, txts, labels, losses, weights, n_bad = [], [], [], [], [], 0
    scale = model.logit_scale.exp().float()
    for batch in eval_batches(
        data_cfg,
        spec,
        transform,
        tokenizer,
        model.config.text.context_length,
        batch_size,
        max_samples,
    ):
        n_bad += batch["n_bad"]
        if batch["pixels"] is None:
            continue
        with autocast():
            img = model.encode_image(batch["pixels"].to(device), normalize=True).float()
            txt = model.encode_text(
                batch["input_ids"].to(device), batch["attention_mask"].to(device), normalize=True
            ).float()
        logits = scale * img @ txt.T
        target = torch.arange(len(img), device=device)
        loss = (
            torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2
        losses.append(float(loss))
        weights.append(len(img))
        imgs.append(img.cpu())
        txts.append(txt.cpu())
        labels.extend(batch["labels"])
    out: dict[str, float] = {"val_bad_samples": float(n_bad)}
    if not imgs:
        return out
    out["val_loss"] = sum(v * w for v, w in zip(losses, weights)) / sum(weights)
    img_all, txt_all = torch.cat(imgs), torch.cat(txts)
    out.update({f"val_{k}": v for k, v in retrieval_metrics(img_all, txt_all).items()})
    if zeroshot_labels and all(lbl is not None for lbl in labels):
        from biomedclip.zeroshot import build_classifier, classify_features

        classifier = build_classifier(model, tokenizer, zeroshot_labels)
        known = [i for i, lbl in enumerate(labels) if lbl in zeroshot_labels]
        if known:
            feats = img_all[known].to(device)
            res = classify_features(model, feats, classifier, list(zeroshot_labels))
            pred = res.probs.argmax(dim=-1).tolist()
            truth = [zeroshot_labels.index(labels[i]) for i in known]
            out["val_zeroshot_accuracy"] = sum(p == t for p, t in zip(pred, truth)) / len(known)
    return out
