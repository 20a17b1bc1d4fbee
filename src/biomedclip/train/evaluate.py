"""Validation during training: contrastive loss, retrieval Recall@1/5/10, optional zero-shot accuracy.

Runs on one process over a held-out shard set or table (deterministic eval transform), encoding
through the one :class:`~biomedclip.embedding.encoder.Encoder` (``encode_pixels``,
``encode_tokens``, ``classifier``) at the training precision. The loss is the mean of per-batch
losses (as open_clip reports it: it depends on the batch size); retrieval ranks each image among
all validation texts and vice versa with :func:`biomedclip.eval.retrieval.retrieval_metrics`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from biomedclip.embedding.encoder import Encoder, EncoderSettings
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
    precision: str = "fp32",
    zeroshot_labels: list[str] | None = None,
) -> dict[str, float]:
    """Validation metrics (``val_loss``, ``val_image_to_text_R@1`` ...) on up to ``max_samples`` pairs."""
    was_training = model.training
    try:
        settings = EncoderSettings(precision, batch_size=batch_size, num_workers=0)
        enc = Encoder(model, tokenizer=tokenizer, settings=settings)  # puts the model in eval mode
        return _evaluate(enc, data_cfg, spec, max_samples, zeroshot_labels)
    finally:
        model.train(was_training)


def _evaluate(enc: Encoder, data_cfg, spec, max_samples, zeroshot_labels):
    model = enc.model
    imgs, txts, labels, losses, weights, n_bad = [], [], [], [], [], 0
    scale = enc.logit_scale
    for batch in eval_batches(
        data_cfg,
        spec,
        eval_transform(model.config.preprocess),
        enc.tokenizer,
        model.config.text.context_length,
        enc.settings.batch_size,
        max_samples,
    ):
        n_bad += batch["n_bad"]
        if batch["pixels"] is None:
            continue
        img = enc.encode_pixels(batch["pixels"])
        txt = enc.encode_tokens(batch["input_ids"], batch["attention_mask"])
        logits = scale * img @ txt.T
        target = torch.arange(len(img), device=img.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
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
        from biomedclip.zeroshot import classify_features

        known = [i for i, lbl in enumerate(labels) if lbl in zeroshot_labels]
        if known:
            classifier = enc.classifier(list(zeroshot_labels))
            res = classify_features(scale, img_all[known], classifier, list(zeroshot_labels))
            pred = res.probs.argmax(dim=-1).tolist()
            truth = [zeroshot_labels.index(labels[i]) for i in known]
            out["val_zeroshot_accuracy"] = sum(p == t for p, t in zip(pred, truth)) / len(known)
    return out
