"""``biomedclip vqa train``: fine-tune a VQA model with the project's training infrastructure.

Reuses :mod:`biomedclip.train`: process group and reductions (``distributed``), atomic step
checkpoints with optimizer / RNG / schedule state (``checkpoint``, with a VQA ``export``), the
warm-up schedule (per-group ``lr_scale``: head x50, fusion x5), metrics.jsonl + TensorBoard
(``trainer.Logger``), seeding and weight-decay rules. Batches are a pure function of the seed and
step (:mod:`.batches`), so a run killed at any point and restarted gives the uninterrupted losses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_write_json
from biomedclip.train import checkpoint as ckpt
from biomedclip.train.distributed import all_reduce_mean, barrier, cleanup, init_distributed
from biomedclip.train.schedule import WarmupSchedule
from biomedclip.train.trainer import Logger, seed_everything
from biomedclip.train.tuning import trainable_summary
from biomedclip.vqa.answers import AnswerVocab
from biomedclip.vqa.batches import StepBatches, step_loader
from biomedclip.vqa.config import VQAConfig
from biomedclip.vqa.data import QAItem, available_splits, load_split
from biomedclip.vqa.model import VQAModel, full_state

log = logging.getLogger("biomedclip.train.vqa")  # progress on stderr like `train`


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


class VQATrainer:
    def __init__(self, cfg: VQAConfig):
        self.cfg = cfg
        self.dist = init_distributed(cfg.train.device)
        self.out_dir = Path(cfg.output.dir)
        self.ckpt_dir = self.out_dir / "checkpoints"

    def _autocast(self):
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            log.info(msg)

    # ---- set-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, d = self.cfg, self.dist
        if cfg.train.precision == "fp16" and d.device.type != "cuda":
            raise ConfigError("train.precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        if cfg.train.global_batch_size % d.world_size:
            raise ConfigError("train.global_batch_size must be divisible by the process count")
        if d.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_partial(self.ckpt_dir)
        seed_everything(cfg.train.seed)
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
        self.optimizer = torch.optim.AdamW(
            optimizer_groups(model, cfg),
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
        )
        n = len(self.train_items)
        self.total = cfg.train.steps or max(
            1, math.ceil(cfg.train.epochs * n / cfg.train.global_batch_size)
        )
        self.schedule = WarmupSchedule(
            self.optimizer,
            cfg.optim.lr,
            int(cfg.optim.warmup_fraction * self.total),
            self.total,
            cfg.optim.schedule,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.precision == "fp16")
        self.train_model = model
        if d.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.train_model = DDP(
                model, device_ids=[d.device] if d.device.type == "cuda" else None
            )
        torch.manual_seed(cfg.train.seed + 1000 * d.rank)

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
        kept = [it for it in items if it.image not in bad and it.answer in self.vocab]
        self.skipped = {
            "unreadable_image": sum(it.image in bad for it in items),
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
        self.batches = StepBatches(
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

    # ---- checkpoints ------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.ckpt_dir,
                step,
                self.model,
                self.tokenizer,
                self.optimizer,
                self.schedule,
                self.scaler,
                {"step": step, "world_size": self.dist.world_size},
                {"config": self.cfg.to_dict()},
                self.cfg.output.keep_last,
                export=lambda p: self.model.save_pretrained(p, self.tokenizer),
            )
            log.info("saved checkpoint %s", path)
        barrier()

    def _resume_point(self) -> Path | None:
        how = self.cfg.output.resume
        if how == "none":
            return None
        if how == "auto":
            return ckpt.latest_checkpoint(self.ckpt_dir)
        if not (Path(how) / ckpt.STATE_JSON).is_file():
            raise ConfigError(f"output.resume: {how} is not a training checkpoint directory")
        return Path(how)

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
            autocast=self._autocast,
        )
        m = score(
            items, [a.best if a else None for a in answers], set(self.vocab.answers), n_boot=200
        )
        out = {
            f"{split}_{k}_accuracy": m[k].get("accuracy", float("nan"))
            for k in ("closed", "open", "overall")
        }
        with open(self.logger.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **out}) + "\n")
        if self.logger.tb is not None:
            for k, v in out.items():
                self.logger.tb.add_scalar(f"eval/{k}", v, step)
        self._say(f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out

    # ---- loop -------------------------------------------------------------------------------
    def _forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.dist.device
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        with self._autocast():
            if self.cached:
                logits = self.train_model(
                    ids, mask, image_tokens=self.token_table[batch["token_rows"].to(dev)]
                )
            else:
                logits = self.train_model(ids, mask, pixels=batch["pixels"].to(dev))
        return vqa_loss(logits, batch["targets"].to(dev), self.cfg.optim.loss), logits

    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.dist
        self.setup()
        resume, start = self._resume_point(), 0
        loader = None
        if resume is not None:
            meta = json.loads((resume / ckpt.STATE_JSON).read_text(encoding="utf-8"))
            if meta["data"]["world_size"] != d.world_size:
                raise ConfigError(
                    f"{resume}: written by {meta['data']['world_size']} processes, "
                    f"resuming with {d.world_size}"
                )
            start = int(meta["step"])
        loader = iter(step_loader(self.batches, start, self.total, cfg.data.workers))
        if resume is not None:  # after the loader: the RNG state is restored last
            ckpt.load_checkpoint(
                resume,
                self.model,
                self.optimizer,
                self.schedule,
                self.scaler,
                read_weights=full_state,
            )
            self._say(f"resumed from {resume} at step {start}")
        self.logger = Logger(self.out_dir, d.is_main, cfg.output.tensorboard, self.total)
        info = trainable_summary(self.model)
        self._say(
            f"training {info['trainable']:,} of {info['parameters']:,} parameters for {self.total} "
            f"steps on {len(self.train_items)} questions ({self.skipped}), {len(self.vocab)} answers "
            f"({self.vocab.source} vocabulary), image features {'cached' if self.cached else 'encoded every step'}"
        )
        t_start, last, correct, seen = time.perf_counter(), float("nan"), 0, 0
        self.model.train()
        for step in range(start + 1, self.total + 1):
            t0 = time.perf_counter()
            batch = next(loader)
            self.optimizer.zero_grad(set_to_none=True)
            loss, logits = self._forward(batch)
            self.scaler.scale(loss).backward()
            if cfg.optim.grad_clip_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad],
                    cfg.optim.grad_clip_norm,
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            loss = float(all_reduce_mean(loss.detach()))
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            hits = int((logits.argmax(-1).cpu() == batch["targets"]).sum())
            acc = float(
                all_reduce_mean(torch.tensor(hits / len(batch["targets"]), device=d.device))
            )
            correct, seen, last = correct + hits, seen + len(batch["targets"]), loss
            n = len(batch["targets"]) * d.world_size
            self.logger.step(
                {
                    "step": step,
                    "loss": loss,
                    "train_accuracy": acc,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "samples_per_s": n / (time.perf_counter() - t0),
                },
                console=False,
            )
            if step % cfg.output.log_every == 0 or step == self.total:
                self._say(
                    f"step {step}/{self.total}  loss {loss:.4f}  batch accuracy {acc:.3f}  "
                    f"lr {self.optimizer.param_groups[0]['lr']:.3g}"
                )
            if cfg.output.eval_every and step % cfg.output.eval_every == 0 and step < self.total:
                self.evaluate(step)
            if step % cfg.output.save_every == 0 or step == self.total:
                self._save(step)
        elapsed = time.perf_counter() - t_start
        metrics = self.evaluate(self.total) if self.total > start else {}
        summary = {
            "steps": self.total,
            "resumed_from_step": start if resume is not None else None,
            "seconds": elapsed,
            "final_loss": last,
            "train_accuracy_this_run": correct / seen if seen else None,
            "n_train_questions": len(self.train_items),
            "skipped_train_questions": self.skipped,
            "n_answers": len(self.vocab),
            "vocabulary": self.vocab.source,
            "image_features": "cached" if self.cached else "encoded",
            **trainable_summary(self.model),
            "world_size": d.world_size,
            "device": str(d.device),
            "precision": cfg.train.precision,
            **metrics,
        }
        if d.is_main:
            summary["final_model"] = str(
                self.model.save_pretrained(self.out_dir / "final", self.tokenizer)
            )
            atomic_write_json(self.out_dir / "summary.json", summary)
            log.info("done; model in %s", summary["final_model"])
        self.logger.close()
        barrier()
        return summary


def train_vqa(cfg: VQAConfig) -> dict[str, Any]:
    """Run VQA training per ``cfg`` (joins the process group under torchrun); returns the summary."""
    trainer = VQATrainer(cfg)
    try:
        return trainer.run()
    finally:
        cleanup()
