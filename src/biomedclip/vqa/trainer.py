"""``biomedclip vqa train``: the VQA model, batches and step on the shared run scaffold.

Everything around the step is :class:`biomedclip.train.run.TrainingRun` (process group, run
directory, atomic step checkpoints with optimizer / RNG / schedule state, exact resume,
metrics.jsonl + TensorBoard + stderr progress, ``summary.json``, ``final/``); this module adds the
answer vocabulary, the backbone + fusion model, per-group learning rates (``lr_scale``: head x50,
fusion x5) and the VQA loss. Batches are a pure function of the seed and step (:mod:`.batches`), so
a run killed at any point and restarted gives the uninterrupted losses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from biomedclip.errors import ConfigError, InputError
from biomedclip.train.distributed import all_reduce_mean, barrier
from biomedclip.train.run import Plan, TrainingRun, run_to_end
from biomedclip.vqa.answers import AnswerVocab
from biomedclip.vqa.batches import StepBatches, step_loader
from biomedclip.vqa.config import VQAConfig
from biomedclip.vqa.data import QAItem, available_splits, load_split
from biomedclip.vqa.model import VQAModel, full_state


def load_splits(cfg: VQAConfig) -> dict[str, list[QAItem]]:
    d = cfg.data
    files = {"train": d.train, "val": d.val, "test": d.test}
    splits = {
        s: load_split(d.dataset, s, d.root, files.get(s))
        for s in available_splits(d.dataset, files)
    }
    if "train" not in splits or not splits["train"]:
        raise ConfigError("data: no training questions")
    if d.limit_train:
        splits["train"] = splits["train"][: d.limit_train]
    return splits


def build_vocab(cfg: VQAConfig, splits: dict[str, list[QAItem]]) -> AnswerVocab:
    if cfg.data.vocabulary == "closed-world":
        answers = [it.answer for items in splits.values() for it in items]
        return AnswerVocab.build(answers, "closed-world", cfg.data.min_answer_count)
    return AnswerVocab.build(
        [it.answer for it in splits["train"]], "train", cfg.data.min_answer_count
    )


def build_backbone(cfg: VQAConfig):
    """``(backbone, preprocess, tokenizer)``: the BiomedCLIP source, or random towers of a preset."""
    from biomedclip.factory import load, load_tokenizer
    from biomedclip.model import BiomedCLIP
    from biomedclip.train.config import ModelSection
    from biomedclip.train.init import base_config
    from biomedclip.transforms import eval_transform

    m = cfg.model
    if m.source:
        backbone, preprocess, tokenizer = load(m.source, tokenizer=m.tokenizer)
        return backbone, preprocess, tokenizer
    tokenizer = load_tokenizer(m.tokenizer) if m.tokenizer else load_tokenizer(None)
    mcfg = base_config(ModelSection(preset=m.preset), tokenizer.vocab_size)
    backbone = BiomedCLIP(mcfg)
    tokenizer.context_length = mcfg.text.context_length
    return backbone, eval_transform(mcfg.preprocess), tokenizer


def optimizer_groups(model: VQAModel, cfg: VQAConfig) -> list[dict[str, Any]]:
    """AdamW groups: encoders x1, fusion x fusion_lr_multiplier, head x head_lr_multiplier, each
    split into weight-decay / no-decay (biases, norms, 1-D) parameters."""
    o = cfg.optim
    scales = {"encoders": 1.0, "fusion": o.fusion_lr_multiplier, "head": o.head_lr_multiplier}
    out = []
    for name, params in model.groups().items():
        decay = [p for n, p in params if p.ndim >= 2 and "norm" not in n.lower()]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and "norm" not in n.lower())]
        for ps, wd in ((decay, o.weight_decay), (no_decay, 0.0)):
            if ps:
                out.append(
                    {
                        "params": ps,
                        "weight_decay": wd,
                        "lr_scale": scales[name],
                        "name": f"{name}{'' if wd else '/no_decay'}",
                    }
                )
    return out


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """``ce``: cross-entropy; ``bce``: M3AE's BCE over one-hot answers times the vocabulary size."""
    if kind == "ce":
        return F.cross_entropy(logits.float(), targets)
    onehot = F.one_hot(targets, logits.shape[-1]).float()
    return F.binary_cross_entropy_with_logits(logits.float(), onehot) * logits.shape[-1]


class VQATrainer(TrainingRun):
    """The VQA loop: backbone tokens -> fusion -> answer head, trained with ``vqa_loss``."""

    cfg: VQAConfig
    read_weights = staticmethod(full_state)  # the whole VQAModel, as ``export`` writes it

    # ---- model and data ---------------------------------------------------------------------
    def build(self) -> Plan:
        cfg, d = self.cfg, self.dist
        self.splits = load_splits(cfg)
        self.vocab = build_vocab(cfg, self.splits)
        backbone, self.preprocess, self.tokenizer = build_backbone(cfg)
        model = VQAModel(backbone, cfg.model.fusion, self.vocab)
        model.configure(
            cfg.model.image,
            cfg.model.image_unfrozen_blocks,
            cfg.model.text,
            cfg.model.text_unfrozen_blocks,
        )
        if cfg.model.grad_checkpointing:
            model.set_grad_checkpointing(True)
        self.model = model.to(d.device)
        self.cached = model.image_frozen and cfg.model.cache_image_features
        self._prepare_data()
        total = cfg.train.steps or max(
            1, math.ceil(cfg.train.epochs * len(self.train_items) / cfg.train.global_batch_size)
        )
        self.correct, self.seen = 0, 0
        return Plan(optimizer_groups(model, cfg), total, int(cfg.optim.warmup_fraction * total))

    def _feature_cache_dir(self) -> Path:
        return Path(self.cfg.output.feature_cache or self.out_dir / "feature_cache")

    def _prepare_data(self) -> None:
        from biomedclip.transforms import train_transform
        from biomedclip.vqa.features import FeatureCache

        cfg, d = self.cfg, self.dist
        items = self.splits["train"]
        if self.cached:
            cache = FeatureCache(self._feature_cache_dir(), self.model.backbone, self.preprocess)
            paths = sorted({it.image for its in self.splits.values() for it in its})
            if d.is_main:
                cache.tokens(paths, workers=cfg.data.workers, progress=True)
            barrier()
            tokens = cache.tokens(paths)
            self.image_paths = sorted(tokens)
            rows = {p: i for i, p in enumerate(self.image_paths)}
            self.token_table = torch.stack([tokens[p] for p in self.image_paths]).to(d.device)
            bad = cache.failures
        else:
            from biomedclip.imaging import load_image

            rows, bad = None, {}
            for p in sorted({it.image for it in items}):
                try:
                    load_image(p)
                except Exception as e:  # noqa: BLE001 - report and skip the image's questions
                    bad[p] = str(e)
        unreadable = sorted({it.image for it in items if it.image in bad})
        if unreadable and not cfg.data.skip_unreadable:
            raise InputError(
                f"{len(unreadable)} training image(s) could not be read (first: {unreadable[0]}: "
                f"{bad[unreadable[0]]}); fix them, or pass --skip-unreadable "
                "(data.skip_unreadable=true) to train without their questions"
            )
        kept = [it for it in items if it.image not in bad and it.answer in self.vocab]
        self.skipped = {
            "unreadable_image": sum(it.image in bad for it in items),
            "unreadable_images": len(unreadable),
            "answer_not_in_vocabulary": sum(it.answer not in self.vocab for it in items),
        }
        if not kept:
            raise ConfigError("data: no usable training questions")
        self.train_items = kept
        qmax = cfg.model.fusion.max_question_tokens
        ids = [
            x[: qmax - 1] + [x[-1]] if len(x) > qmax else x
            for x in self.tokenizer.encode([it.question for it in kept])
        ]
        self.step_batches = StepBatches(
            kept,
            [self.vocab.index(it.answer) for it in kept],
            ids,
            self.tokenizer.pad_id,
            cfg.train.global_batch_size,
            cfg.train.seed,
            d.rank,
            d.world_size,
            rows,
            None if self.cached else train_transform(self.model.backbone.config.preprocess),
        )

    def batches(self, start: int):
        return iter(step_loader(self.step_batches, start, self.total, self.cfg.data.workers))

    def export(self, directory: Path) -> Path:
        return self.model.save_pretrained(directory, self.tokenizer)

    # ---- the step ---------------------------------------------------------------------------
    def train_step(self, step: int, batches) -> tuple[torch.Tensor, int]:
        batch = next(batches)
        dev = self.dist.device
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        with self.autocast():
            if self.cached:
                logits = self.train_model(
                    ids, mask, image_tokens=self.token_table[batch["token_rows"].to(dev)]
                )
            else:
                logits = self.train_model(ids, mask, pixels=batch["pixels"].to(dev))
        loss = vqa_loss(logits, batch["targets"].to(dev), self.cfg.optim.loss)
        self.scaler.scale(loss).backward()
        self.hits = int((logits.detach().argmax(-1).cpu() == batch["targets"]).sum())
        self.n_local = len(batch["targets"])
        return loss, self.n_local

    def step_record(self) -> dict[str, Any]:
        acc = all_reduce_mean(torch.tensor(self.hits / self.n_local, device=self.dist.device))
        self.correct, self.seen = self.correct + self.hits, self.seen + self.n_local
        return {"train_accuracy": float(acc)}

    def progress_details(self, record: dict[str, Any]) -> str:
        return f"batch accuracy {record['train_accuracy']:.3f}  lr {record['lr']:.3g}"

    def run_details(self) -> str:
        features = "cached" if self.cached else "encoded every step"
        return (
            f" on {len(self.train_items)} questions ({self.skipped}), {len(self.vocab)} answers "
            f"({self.vocab.source} vocabulary), image features {features}"
        )

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, step: int, split: str = "test") -> dict[str, float]:
        from biomedclip.vqa.metrics import score
        from biomedclip.vqa.predict import predict

        items = self.splits.get(split)
        if not items or not self.dist.is_main:
            return {}
        cache = self._feature_cache_dir() if self.cached else None
        answers, _ = predict(
            self.model,
            self.tokenizer,
            self.preprocess,
            items,
            self.cfg.train.eval_batch_size,
            cache,
            autocast=self.autocast,
        )
        m = score(
            items, [a.best if a else None for a in answers], set(self.vocab.answers), n_boot=200
        )
        return {
            f"{split}_{k}_accuracy": m[k].get("accuracy", float("nan"))
            for k in ("closed", "open", "overall")
        }

    def eval_tb_name(self, key: str) -> str:
        return f"eval/{key}"

    def final_metrics(self, start: int) -> dict[str, float]:
        return self.run_eval(self.total) if self.total > start else {}

    def summary_fields(self) -> dict[str, Any]:
        return {
            "train_accuracy_this_run": self.correct / self.seen if self.seen else None,
            "n_train_questions": len(self.train_items),
            "skipped_train_questions": self.skipped,
            "n_answers": len(self.vocab),
            "vocabulary": self.vocab.source,
            "image_features": "cached" if self.cached else "encoded",
        }


def train_vqa(cfg: VQAConfig) -> dict[str, Any]:
    """Run VQA training per ``cfg`` (joins the process group under torchrun); returns the summary."""
    return run_to_end(VQATrainer(cfg))
