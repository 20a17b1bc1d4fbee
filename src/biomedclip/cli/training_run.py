"""Running a training config from the command line: the one body of ``train`` and ``vqa train``.

Both commands take ``CONFIG``, ``--set KEY=VALUE`` (repeatable), ``--print-config`` and ``--json``;
:func:`run_training_config` loads the config, prints it or trains, sends progress to stderr and
prints only the summary (one line, or JSON) on stdout, on rank 0 of a torchrun job.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from biomedclip.cli.common import print_json


def run_training_config(
    args: argparse.Namespace,
    load_config: Callable[[str, list[str]], Any],
    train: str,
    summary_line: Callable[[dict[str, Any]], str],
) -> int:
    """``load_config(args.config, args.overrides)``, then ``--print-config`` or the training
    function named ``train`` (``"module:function"``, imported only to train); ``summary_line``
    words the summary when ``--json`` is not given."""
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print_json(cfg.to_dict())
        return 0
    from biomedclip.train.runlog import log_progress_to_stderr

    module, name = train.split(":")
    train_fn = getattr(importlib.import_module(module), name)
    log_progress_to_stderr()
    summary = train_fn(cfg)
    if "final_model" not in summary:  # not rank 0 of a torchrun job
        return 0
    if args.json:
        print_json(summary)
    else:
        print(summary_line(summary))
    return 0


def contrastive_summary_line(summary: dict[str, Any]) -> str:
    """``biomedclip train``'s stdout line."""
    loss, speed = summary["final_loss"], summary["samples_per_s"] or 0.0
    return (
        f"trained {summary['steps']} steps: final loss {loss:.4f}, {speed:.1f} samples/s; "
        f"model in {summary['final_model']}"
    )


def vqa_summary_line(summary: dict[str, Any]) -> str:
    """``biomedclip vqa train``'s stdout line."""
    closed, opened = summary.get("test_closed_accuracy"), summary.get("test_open_accuracy")
    scores = "" if closed is None else f"; test closed {closed:.3f} / open {opened:.3f}"
    skipped = summary.get("skipped_train_questions") or {}
    unreadable = (
        f"; skipped {skipped['unreadable_image']} training question(s) of "
        f"{skipped.get('unreadable_images', '?')} unreadable image(s)"
        if skipped.get("unreadable_image")
        else ""
    )
    return (
        f"trained {summary['steps']} steps: final loss {summary['final_loss']:.4f}{scores}; "
        f"model in {summary['final_model']}{unreadable}"
    )
