"""The training loop: config -> model, data, optimizer -> steps, checkpoints, evaluation, logs.

One process or one per device under ``torchrun`` (DDP). Each step takes one batch of
``global_batch_size / world_size`` pairs per process, computes the sharded contrastive loss (whole
or GradCache-accumulated), clips, steps AdamW and the schedule, and clamps the temperature.
Rank 0 writes ``metrics.jsonl`` (every step), TensorBoard logs, checkpoints and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_write_json
from biomedclip.train import checkpoint as ckpt
from biomedclip.train.config import TrainConfig
from biomedclip.train.data import make_loader, make_spec
from biomedclip.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from biomedclip.train.evaluate import evaluate
from biomedclip.train.gradcache import contrastive_backward
from biomedclip.train.init import build_model, load_training_tokenizer
from biomedclip.train.loss import ClipLoss, clamp_logit_scale
from biomedclip.train.schedule import WarmupSchedule
from biomedclip.train.tuning import configure_trainable, trainable_summary
from biomedclip.transforms import train_transform

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings' 1-D params and ``logit_scale`` (open_clip's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bias" in name or "norm" in name.lower() or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def total_steps(cfg: TrainConfig, table_rows: int | None) -> int:
    if cfg.train.steps:
        return cfg.train.steps
    if cfg.train.epochs:
        samples = cfg.train.samples_per_epoch or table_rows
        if not samples:
            raise ConfigError("train.epochs with shards needs train.samples_per_epoch")
        return max(1, math.ceil(cfg.train.epochs * samples / cfg.train.global_batch_size))
    raise ConfigError("set train.steps (or train.epochs)")


class Logger:
    """Console lines, ``metrics.jsonl`` and TensorBoard, on rank 0 only."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, total: int):
        self.enabled = enabled
        self.total = total
        self.metrics_path = out_dir / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log.warning("tensorboard not installed: TensorBoard logging off")

    def step(self, record: dict[str, Any], console: bool) -> None:
        if not self.enabled:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])
        if console:
            log.info(
                "step %d/%d  loss %.4f  lr %.3g  scale %.2f  %.1f samples/s",
                record["step"],
                self.total,
                record["loss"],
                record["lr"],
                record["logit_scale"],
                record["samples_per_s"],
            )

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"val/{k.removeprefix('val_')}", v, step)
        shown = {
            k: v
            for k, v in metrics.items()
            if k
            in (
                "val_loss",
                "val_image_to_text_R@1",
                "val_text_to_image_R@1",
                "val_image_to_text_R@10",
                "val_zeroshot_accuracy",
            )
        }
        log.info("eval step %d: %s", step, "  ".join(f"{k[4:]} {v:.4f}" for k, v in shown.items()))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Trainer:
    def __init__(self, cfg: TrainConfig, dist_info: DistInfo | None = None):
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.out_dir = Path(cfg.output.dir)
        self.ckpt_dir = self.out_dir / "checkpoints"

    # ---- set-up -----------------------------------------------------------------------------
    def _autocast(self):
        precision, dev = self.cfg.train.precision, self.dist.device
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=dev.type, dtype=dtype)

    def _prepare_shapes(self) -> None:
        shapes = self.cfg.data.shapes
        if shapes.n_train <= 0:
            return
        from biomedclip.train.shapes import ensure_dataset

        data_dir = self.out_dir / "shapes_data"
        if self.dist.is_main:
            ensure_dataset(
                data_dir,
                shapes.n_train,
                shapes.n_val,
                shapes.seed,
                shapes.image_size,
                shapes.samples_per_shard,
            )
        barrier()
        self.cfg.data.train = str(data_dir / "train-*.tar")
        if shapes.n_val > 0:
            self.cfg.data.val = str(data_dir / "val-*.tar")

    def setup(self) -> None:
        cfg, d = self.cfg, self.dist
        if cfg.train.global_batch_size % d.world_size:
            raise ConfigError(
                f"train.global_batch_size {cfg.train.global_batch_size} is not divisible by the "
                f"{d.world_size} processes"
            )
        if cfg.train.precision == "fp16" and d.device.type != "cuda":
            raise ConfigError("train.precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        self.local_batch = cfg.train.global_batch_size // d.world_size
        if d.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_partial(self.ckpt_dir)
        self._prepare_shapes()
        seed_everything(cfg.train.seed)
        # the tiny preset's context length is known before the model: use the model's below
        self.tokenizer = load_training_tokenizer(cfg.model, 256)
        model = build_model(cfg.model, self.tokenizer)
        self.tokenizer.context_length = model.config.text.context_length
        configure_trainable(model, cfg.model)
        if cfg.model.grad_checkpointing:
            model.set_grad_checkpointing(True)
        model.to(d.device)
        self.model = model
        self.optimizer = torch.optim.AdamW(
            param_groups(model, cfg.optim.weight_decay),
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
        )
        self.spec = make_spec(cfg.data, self.local_batch, d.rank, d.world_size, cfg.train.seed)
        self.total = total_steps(cfg, len(self.spec.samples) if self.spec.samples else None)
        self.schedule = WarmupSchedule(
            self.optimizer,
            cfg.optim.lr,
            cfg.optim.warmup_steps,
            self.total,
            cfg.optim.schedule,
            cfg.optim.min_lr,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.precision == "fp16")
        self.loss_fn = ClipLoss(cfg.train.local_loss, cfg.train.gather_with_grad)
        self.train_model = model
        if d.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.train_model = DDP(
                model, device_ids=[d.device] if d.device.type == "cuda" else None
            )
        if cfg.model.compile:
            self.train_model = torch.compile(self.train_model)
        torch.manual_seed(cfg.train.seed + 1000 * d.rank)  # dropout differs across ranks

    def _resume_point(self) -> Path | None:
        how = self.cfg.output.resume
        if how == "none":
            return None
        if how == "auto":
            return ckpt.latest_checkpoint(self.ckpt_dir)
        path = Path(how)
        if not (path / ckpt.STATE_JSON).is_file():
            raise ConfigError(f"output.resume: {path} is not a training checkpoint directory")
        return path

    # ---- loop -------------------------------------------------------------------------------
    def _next_batch(self, it) -> dict[str, Any]:
        while True:
            batch = next(it)
            self.batches_consumed += 1
            self.bad_samples += batch["n_bad"]
            if batch["pixels"] is not None:
                break
        n = batch["pixels"].shape[0]
        if self.dist.distributed:  # all ranks need the same batch size for the gather
            t = torch.tensor([n], device=self.dist.device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            n = int(t.item())
        dev = self.dist.device
        nb = dev.type == "cuda"
        return {
            k: batch[k][:n].to(dev, non_blocking=nb)
            for k in ("pixels", "input_ids", "attention_mask")
        }

    def _data_state(self) -> dict[str, Any]:
        counts = [self.batches_consumed]
        if self.dist.distributed:
            counts = [None] * self.dist.world_size
            dist.all_gather_object(counts, self.batches_consumed)
        bad = [self.bad_samples]
        if self.dist.distributed:
            bad = [None] * self.dist.world_size
            dist.all_gather_object(bad, self.bad_samples)
        return {
            "batches_per_rank": counts,
            "bad_samples_per_rank": bad,
            "world_size": self.dist.world_size,
            "workers": self.cfg.data.workers,
        }

    def _save(self, step: int) -> None:
        state = self._data_state()
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.ckpt_dir,
                step,
                self.model,
                self.tokenizer,
                self.optimizer,
                self.schedule,
                self.scaler,
                state,
                {"config": self.cfg.to_dict()},
                self.cfg.output.keep_last,
            )
            log.info("saved checkpoint %s", path)
        barrier()

    def _evaluate(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.cfg.data.val and self.dist.is_main:
            metrics = evaluate(
                self.model,
                self.tokenizer,
                self.cfg.data,
                self.cfg.data.val,
                min(self.local_batch, 256),
                self.cfg.data.max_val_samples,
                self.cfg.train.precision,
                self.cfg.output.zeroshot_labels,
            )
            self.logger.eval(step, metrics)
        barrier()
        return metrics

    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.dist
        self.setup()
        resume = self._resume_point()
        start, self.batches_consumed, self.bad_samples = 0, 0, 0
        meta = None
        if resume is not None:
            meta = json.loads((resume / ckpt.STATE_JSON).read_text(encoding="utf-8"))
            data = meta["data"]
            if data["world_size"] != d.world_size:
                raise ConfigError(
                    f"{resume}: written by {data['world_size']} processes, resuming with "
                    f"{d.world_size}; the data position would not carry over"
                )
            if data.get("workers") != cfg.data.workers and self.spec.shards and d.is_main:
                log.warning(
                    "%s was written with data.workers=%s; with %s workers the shard streams "
                    "differ, so the data order after the resume is not the uninterrupted run's",
                    resume,
                    data.get("workers"),
                    cfg.data.workers,
                )
            start = int(meta["step"])
            self.batches_consumed = int(data["batches_per_rank"][d.rank])
            self.bad_samples = int(data["bad_samples_per_rank"][d.rank])
        loader = make_loader(
            self.spec,
            train_transform(self.model.config.preprocess),
            self.tokenizer,
            self.model.config.text.context_length,
            cfg.data.workers,
            self.batches_consumed,
            cfg.train.seed,
        )
        it = iter(loader)
        if resume is not None:  # after the loader: the RNG state is restored last
            ckpt.load_checkpoint(resume, self.model, self.optimizer, self.schedule, self.scaler)
            if d.is_main:
                log.info("resumed from %s at step %d", resume, start)
        self.logger = Logger(self.out_dir, d.is_main, cfg.output.tensorboard, self.total)
        if d.is_main:
            info = trainable_summary(self.model)
            log.info(
                "training %s of %s parameters for %d steps, batch %d on %d process(es), %s, %s",
                f"{info['trainable']:,}",
                f"{info['parameters']:,}",
                self.total,
                cfg.train.global_batch_size,
                d.world_size,
                d.device,
                cfg.train.precision,
            )
        t_start, samples, last_loss, eval_metrics = time.perf_counter(), 0, float("nan"), {}
        self.model.train()
        for step in range(start + 1, self.total + 1):
            t0 = time.perf_counter()
            batch = self._next_batch(it)
            self.optimizer.zero_grad(set_to_none=True)
            loss = contrastive_backward(
                self.train_model,
                batch,
                self.loss_fn,
                cfg.train.micro_batch_size,
                self._autocast,
                self.scaler.scale,
            )
            if cfg.optim.grad_clip_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.model.parameters() if p.requires_grad],
                    cfg.optim.grad_clip_norm,
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            clamp_logit_scale(self.model, cfg.train.max_logit_scale)
            loss = float(all_reduce_mean(loss))
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            n = batch["pixels"].shape[0] * d.world_size
            samples += n
            last_loss = loss
            dt = time.perf_counter() - t0
            self.logger.step(
                {
                    "step": step,
                    "loss": loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "logit_scale": float(self.model.logit_scale.detach().exp()),
                    "samples_per_s": n / dt,
                    "bad_samples": self.bad_samples,
                },
                console=step % cfg.output.log_every == 0 or step == self.total,
            )
            if cfg.output.eval_every and step % cfg.output.eval_every == 0 and step < self.total:
                self._evaluate(step)
            if step % cfg.output.save_every == 0 or step == self.total:
                self._save(step)
        elapsed = time.perf_counter() - t_start
        if cfg.data.val:
            eval_metrics = self._evaluate(self.total)
        summary = {
            "steps": self.total,
            "resumed_from_step": start if resume is not None else None,
            "samples_seen_this_run": samples,
            "seconds": elapsed,
            "samples_per_s": samples / elapsed if elapsed > 0 else None,
            "final_loss": last_loss,
            "bad_samples": sum(self._data_state()["bad_samples_per_rank"]),
            **trainable_summary(self.model),
            "world_size": d.world_size,
            "device": str(d.device),
            "precision": cfg.train.precision,
            **eval_metrics,
        }
        if d.is_main:
            final = ckpt.export_model(self.model, self.out_dir / "final", self.tokenizer)
            summary["final_model"] = str(final)
            atomic_write_json(self.out_dir / "summary.json", summary)
            log.info("done: %d steps; model in %s", summary["steps"], final)
        self.logger.close()
        barrier()
        return summary


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training per ``cfg`` (joins the process group under torchrun); returns the summary."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        cleanup()
