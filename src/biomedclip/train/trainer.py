"""Contrastive (CLIP) training: the model, batches and step on the shared run scaffold.

One process or one per device under ``torchrun`` (DDP). Each step takes one batch of
``global_batch_size / world_size`` pairs per process, computes the sharded contrastive loss (whole
or GradCache-accumulated), clips, steps AdamW and the schedule, and clamps the temperature.
Everything around the step (run directory, checkpoints and exact resume, ``metrics.jsonl``,
TensorBoard, evaluations, ``summary.json``, ``final/``) is :class:`biomedclip.train.run.TrainingRun`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from biomedclip.errors import ConfigError
from biomedclip.train.config import TrainConfig
from biomedclip.train.data import make_loader, make_spec
from biomedclip.train.distributed import barrier
from biomedclip.train.evaluate import evaluate
from biomedclip.train.gradcache import contrastive_backward
from biomedclip.train.init import build_model, load_training_tokenizer
from biomedclip.train.loss import ClipLoss, clamp_logit_scale
from biomedclip.train.run import Plan, TrainingRun, run_to_end
from biomedclip.train.tuning import configure_trainable
from biomedclip.transforms import train_transform

log = logging.getLogger(__name__)

__all__ = ["Trainer", "param_groups", "total_steps", "train"]


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


EVAL_SHOWN = (
    "val_loss",
    "val_image_to_text_R@1",
    "val_text_to_image_R@1",
    "val_image_to_text_R@10",
    "val_zeroshot_accuracy",
)


class Trainer(TrainingRun):
    """The contrastive loop: a BiomedCLIP model, (pixels, tokens) batches, the CLIP loss."""

    cfg: TrainConfig

    # ---- model and data ---------------------------------------------------------------------
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

    def build(self) -> Plan:
        cfg, d = self.cfg, self.dist
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        self.local_batch = cfg.train.global_batch_size // d.world_size
        self._prepare_shapes()
        # the tiny preset's context length is known before the model: use the model's below
        self.tokenizer = load_training_tokenizer(cfg.model, 256)
        model = build_model(cfg.model, self.tokenizer)
        self.tokenizer.context_length = model.config.text.context_length
        configure_trainable(model, cfg.model)
        if cfg.model.grad_checkpointing:
            model.set_grad_checkpointing(True)
        self.model = model.to(d.device)
        self.spec = make_spec(cfg.data, self.local_batch, d.rank, d.world_size, cfg.train.seed)
        self.loss_fn = ClipLoss(cfg.train.local_loss, cfg.train.gather_with_grad)
        self.batches_consumed, self.bad_samples = 0, 0
        return Plan(
            param_groups(model, cfg.optim.weight_decay),
            total_steps(cfg, len(self.spec.samples) if self.spec.samples else None),
            cfg.optim.warmup_steps,
            cfg.optim.min_lr,
        )

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        wrapped = super().wrap(model)
        return torch.compile(wrapped) if self.cfg.model.compile else wrapped

    def restore_data(self, data_state: dict[str, Any], path: Path) -> None:
        d = self.dist
        if data_state.get("workers") != self.cfg.data.workers and self.spec.shards and d.is_main:
            log.warning(
                "%s was written with data.workers=%s; with %s workers the shard streams "
                "differ, so the data order after the resume is not the uninterrupted run's",
                path,
                data_state.get("workers"),
                self.cfg.data.workers,
            )
        self.batches_consumed = int(data_state["batches_per_rank"][d.rank])
        self.bad_samples = int(data_state["bad_samples_per_rank"][d.rank])

    def data_state(self, step: int) -> dict[str, Any]:
        counts, bad = [self.batches_consumed], [self.bad_samples]
        if self.dist.distributed:
            counts = [None] * self.dist.world_size
            dist.all_gather_object(counts, self.batches_consumed)
            bad = [None] * self.dist.world_size
            dist.all_gather_object(bad, self.bad_samples)
        return {
            "batches_per_rank": counts,
            "bad_samples_per_rank": bad,
            "world_size": self.dist.world_size,
            "workers": self.cfg.data.workers,
        }

    def batches(self, start: int):
        loader = make_loader(
            self.spec,
            train_transform(self.model.config.preprocess),
            self.tokenizer,
            self.model.config.text.context_length,
            self.cfg.data.workers,
            self.batches_consumed,
            self.cfg.train.seed,
        )
        return iter(loader)

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

    # ---- the step ---------------------------------------------------------------------------
    def train_step(self, step: int, batches) -> tuple[torch.Tensor, int]:
        batch = self._next_batch(batches)
        loss = contrastive_backward(
            self.train_model,
            batch,
            self.loss_fn,
            self.cfg.train.micro_batch_size,
            self.autocast,
            self.scaler.scale,
        )
        return loss, batch["pixels"].shape[0]

    def after_optimizer_step(self) -> None:
        clamp_logit_scale(self.model, self.cfg.train.max_logit_scale)

    def step_record(self) -> dict[str, Any]:
        return {
            "logit_scale": float(self.model.logit_scale.detach().exp()),
            "bad_samples": self.bad_samples,
        }

    def progress_details(self, record: dict[str, Any]) -> str:
        return (
            f"lr {record['lr']:.3g}  scale {record['logit_scale']:.2f}  "
            f"{record['samples_per_s']:.1f} samples/s"
        )

    def run_details(self) -> str:
        cfg, d = self.cfg, self.dist
        return (
            f", batch {cfg.train.global_batch_size} on {d.world_size} process(es), {d.device}, "
            f"{cfg.train.precision}"
        )

    # ---- evaluation and summary -------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        if not (self.cfg.data.val and self.dist.is_main):
            return {}
        return evaluate(
            self.model,
            self.tokenizer,
            self.cfg.data,
            self.cfg.data.val,
            min(self.local_batch, 256),
            self.cfg.data.max_val_samples,
            self.cfg.train.precision,
            self.cfg.output.zeroshot_labels,
        )

    def eval_line(self, step: int, metrics: dict[str, float]) -> str:
        shown = "  ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items() if k in EVAL_SHOWN)
        return f"eval step {step}: {shown}"

    def summary_fields(self) -> dict[str, Any]:
        return {"bad_samples": sum(self.data_state(self.total)["bad_samples_per_rank"])}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training per ``cfg`` (joins the process group under torchrun); returns the summary."""
    return run_to_end(Trainer(cfg))
