"""The run scaffold every training loop shares (contrastive ``train``, ``vqa train``).

:class:`TrainingRun` owns everything around the step: the process group (one process or one per
device under ``torchrun``), the run directory, seeding, AdamW + the warm-up schedule + the fp16
loss scaler, DDP, checkpoints that resume exactly (through :mod:`biomedclip.train.checkpoint`:
atomic ``step_N`` directories, the last K kept, the RNG state restored after the loader is built),
``metrics.jsonl`` / TensorBoard / stderr progress (:mod:`biomedclip.train.runlog`), evaluations,
``summary.json`` and the exported ``final/`` model. A loop subclasses it and keeps only its model,
batches and step, in these hooks:

* ``build()`` sets ``self.model`` (on ``self.dist.device``) and ``self.tokenizer`` and returns a
  :class:`Plan` (optimizer parameter groups, total and warm-up steps);
* ``batches(start)``: an iterator of batches from step ``start`` (0-based), built after
  ``restore_data(data_state, path)`` on resume; ``data_state(step)`` is what a checkpoint records
  about the data position (called on every rank: it may gather);
* ``train_step(step, batches)``: forward and (scaled) backward of one step; returns the local loss
  and the local number of samples; ``after_optimizer_step()`` and ``step_record()`` follow the
  optimizer step (every rank), ``progress_details(record)`` ends the console line;
* ``evaluate(step)``: metrics on rank 0 (``{}`` elsewhere or without evaluation data);
* ``run_details()`` ends the start-up line; ``summary_fields()``: the loop's own ``summary.json`` fields;
* ``export(directory)``: the model directory of checkpoints and ``final/`` (default: a BiomedCLIP
  model directory), read back on resume with ``read_weights`` (default: that directory's weights).

The config must have ``train`` (``device``, ``precision``, ``seed``, ``global_batch_size``),
``optim`` (``lr``, ``betas``, ``eps``, ``schedule``, ``grad_clip_norm``) and ``output`` (``dir``,
``resume``, ``save_every``, ``keep_last``, ``log_every``, ``eval_every``, ``tensorboard``) sections
and ``to_dict()``; it is loaded by :func:`biomedclip.train.config_files.load_typed_config`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biomedclip.errors import ConfigError
from biomedclip.io_utils import atomic_write_json
from biomedclip.train import checkpoint as ckpt
from biomedclip.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from biomedclip.train.runlog import Logger
from biomedclip.train.schedule import WarmupSchedule
from biomedclip.train.tuning import trainable_summary

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Plan:
    """What a loop's ``build()`` decides besides the model: the optimizer and the schedule."""

    param_groups: list[dict[str, Any]]
    total_steps: int
    warmup_steps: int
    min_lr: float = 0.0


class TrainingRun:
    """One training run of ``cfg``: set-up, the step loop, checkpoints, resume, summary, export."""

    # how load_checkpoint reads the weights that ``export`` wrote (None: the model directory's)
    read_weights: Callable[[Path], dict[str, torch.Tensor]] | None = None

    def __init__(self, cfg: Any, dist_info: DistInfo | None = None):
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.train.device)
        self.out_dir = Path(cfg.output.dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.tokenizer = None

    # ---- hooks of the loops -----------------------------------------------------------------
    def build(self) -> Plan:
        raise NotImplementedError

    def batches(self, start: int) -> Iterator[Any]:
        raise NotImplementedError

    def train_step(self, step: int, batches: Iterator[Any]) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def restore_data(self, data_state: dict[str, Any], path: Path) -> None:
        """Take the data position of a checkpoint (``data_state`` as written by ``data_state``)."""

    def data_state(self, step: int) -> dict[str, Any]:
        return {"step": step, "world_size": self.dist.world_size}

    def after_optimizer_step(self) -> None:
        """Called on every rank after the optimizer and schedule step."""

    def step_record(self) -> dict[str, Any]:
        """The loop's fields of the step's ``metrics.jsonl`` record (every rank)."""
        return {}

    def progress_line(self, record: dict[str, Any]) -> str:
        """The console line of a logged step: step and loss, then ``progress_details``."""
        return (
            f"step {record['step']}/{self.total}  loss {record['loss']:.4f}  "
            + self.progress_details(record)
        )

    def progress_details(self, record: dict[str, Any]) -> str:
        return f"lr {record['lr']:.3g}  {record['samples_per_s']:.1f} samples/s"

    def describe(self) -> str:
        """The start-up line: what trains for how long, then ``run_details``."""
        info = trainable_summary(self.model)
        return (
            f"training {info['trainable']:,} of {info['parameters']:,} parameters for "
            f"{self.total} steps{self.run_details()}"
        )

    def run_details(self) -> str:
        return f" on {self.dist.world_size} process(es), {self.dist.device}"

    def evaluate(self, step: int) -> dict[str, float]:
        return {}

    def eval_tb_name(self, key: str) -> str:
        return f"val/{key.removeprefix('val_')}"

    def eval_line(self, step: int, metrics: dict[str, float]) -> str:
        return f"eval step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def final_metrics(self, start: int) -> dict[str, float]:
        """The evaluation at the end of the run (``start``: the step it resumed from)."""
        return self.run_eval(self.total)

    def summary_fields(self) -> dict[str, Any]:
        """The loop's own ``summary.json`` fields (every rank: it may gather)."""
        return {}

    def export(self, directory: Path) -> Path:
        return ckpt.export_model(self.model, directory, self.tokenizer)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the steps call: ``model`` under DDP when distributed."""
        d = self.dist
        if not d.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[d.device] if d.device.type == "cuda" else None)

    # ---- helpers for the loops --------------------------------------------------------------
    def autocast(self):
        """The autocast context of ``train.precision`` (none for fp32)."""
        precision = self.cfg.train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def say(self, msg: str) -> None:
        """A progress line on stderr (rank 0)."""
        if self.dist.is_main:
            log.info(msg)

    # ---- set-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, d = self.cfg, self.dist
        if cfg.train.global_batch_size % d.world_size:
            raise ConfigError(
                f"train.global_batch_size {cfg.train.global_batch_size} is not divisible by the "
                f"{d.world_size} processes"
            )
        if cfg.train.precision == "fp16" and d.device.type != "cuda":
            raise ConfigError("train.precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        if d.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_partial(self.ckpt_dir)
        seed_everything(cfg.train.seed)
        plan = self.build()
        self.total = plan.total_steps
        self.optimizer = torch.optim.AdamW(
            plan.param_groups,
            lr=cfg.optim.lr,
            betas=tuple(cfg.optim.betas),
            eps=cfg.optim.eps,
        )
        self.schedule = WarmupSchedule(
            self.optimizer,
            cfg.optim.lr,
            plan.warmup_steps,
            self.total,
            cfg.optim.schedule,
            plan.min_lr,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.precision == "fp16")
        self.train_model = self.wrap(self.model)
        torch.manual_seed(cfg.train.seed + 1000 * d.rank)  # dropout differs across ranks

    # ---- checkpoints ------------------------------------------------------------------------
    def resume_point(self) -> Path | None:
        how = self.cfg.output.resume
        if how == "none":
            return None
        if how == "auto":
            return ckpt.latest_checkpoint(self.ckpt_dir)
        path = Path(how)
        if not (path / ckpt.STATE_JSON).is_file():
            raise ConfigError(f"output.resume: {path} is not a training checkpoint directory")
        return path

    def read_resume_state(self, path: Path) -> int:
        """The step ``path`` was saved at; hands its data position to ``restore_data``."""
        meta = json.loads((path / ckpt.STATE_JSON).read_text(encoding="utf-8"))
        data = meta["data"]
        if data["world_size"] != self.dist.world_size:
            raise ConfigError(
                f"{path}: written by {data['world_size']} processes, resuming with "
                f"{self.dist.world_size}; the data position would not carry over"
            )
        self.restore_data(data, path)
        return int(meta["step"])

    def save(self, step: int) -> None:
        state = self.data_state(step)
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
                export=self.export,
            )
            log.info("saved checkpoint %s", path)
        barrier()

    # ---- loop -------------------------------------------------------------------------------
    def run_eval(self, step: int) -> dict[str, float]:
        """``evaluate(step)``, logged; every rank waits for it."""
        metrics = self.evaluate(step)
        if metrics and self.dist.is_main:
            self.logger.eval(step, metrics, self.eval_tb_name, self.eval_line(step, metrics))
        barrier()
        return metrics

    def optimizer_step(self) -> None:
        """Gradient clipping, the (scaled) optimizer step, the schedule, ``after_optimizer_step``."""
        clip = self.cfg.optim.grad_clip_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self.after_optimizer_step()

    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.dist
        self.setup()
        resume = self.resume_point()
        start = self.read_resume_state(resume) if resume is not None else 0
        batches = self.batches(start)
        if resume is not None:  # after the loader: the RNG state is restored last
            ckpt.load_checkpoint(
                resume,
                self.model,
                self.optimizer,
                self.schedule,
                self.scaler,
                read_weights=self.read_weights,
            )
            self.say(f"resumed from {resume} at step {start}")
        self.logger = Logger(self.out_dir, d.is_main, cfg.output.tensorboard, self.total)
        self.say(self.describe())
        t_start, samples, last_loss = time.perf_counter(), 0, float("nan")
        self.model.train()
        for step in range(start + 1, self.total + 1):
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            loss_t, n_local = self.train_step(step, batches)
            self.optimizer_step()
            loss = float(all_reduce_mean(loss_t.detach()))
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step}")
            n = n_local * d.world_size
            samples, last_loss = samples + n, loss
            record = {"step": step, "loss": loss, **self.step_record()}
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            record["samples_per_s"] = n / (time.perf_counter() - t0)
            console = step % cfg.output.log_every == 0 or step == self.total
            self.logger.step(record, self.progress_line(record) if console else None)
            if cfg.output.eval_every and step % cfg.output.eval_every == 0 and step < self.total:
                self.run_eval(step)
            if step % cfg.output.save_every == 0 or step == self.total:
                self.save(step)
        elapsed = time.perf_counter() - t_start
        metrics = self.final_metrics(start)
        summary = {
            "steps": self.total,
            "resumed_from_step": start if resume is not None else None,
            "samples_seen_this_run": samples,
            "seconds": elapsed,
            "samples_per_s": samples / elapsed if elapsed > 0 else None,
            "final_loss": last_loss,
            **self.summary_fields(),
            **trainable_summary(self.model),
            "world_size": d.world_size,
            "device": str(d.device),
            "precision": cfg.train.precision,
            **metrics,
        }
        if d.is_main:
            final = self.export(self.out_dir / "final")
            summary["final_model"] = str(final)
            atomic_write_json(self.out_dir / "summary.json", summary)
            log.info("done: %d steps; model in %s", self.total, final)
        self.logger.close()
        barrier()
        return summary


def run_to_end(run: TrainingRun) -> dict[str, Any]:
    """``run.run()``, leaving the process group (torchrun) however it ends; the summary."""
    try:
        return run.run()
    finally:
        cleanup()
