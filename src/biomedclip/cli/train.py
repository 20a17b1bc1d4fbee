"""``biomedclip train CONFIG [--set key=value ...]``: contrastive pretraining / fine-tuning."""

from __future__ import annotations

import argparse
import sys

from biomedclip.cli.common import add_json_flag, print_json

DESCRIPTION = """\
Train or fine-tune BiomedCLIP with the contrastive (CLIP) loss. CONFIG is a YAML or TOML file with
sections model / data / optim / train / output (see configs/ in the repository); --set overrides
any key. Runs as one process, or one process per device under torchrun (DDP: nccl on GPU, gloo on
CPU). Checkpoints go to OUTPUT/checkpoints/step_N (loadable with biomedclip.load) and a run resumes
from the latest one automatically; OUTPUT/summary.json and OUTPUT/final/ are written at the end.
Progress (steps, evaluations, checkpoints) is logged to stderr; stdout gets only the final summary
(one line, or the summary as JSON with --json).

examples:
  biomedclip train configs/finetune_biomedclip.yaml --set data.train=/data/pmc/{000000..000999}.tar
  biomedclip train configs/tiny_cpu.yaml --set train.steps=50 --set output.dir=runs/try
  torchrun --standalone --nproc_per_node 2 -m biomedclip.cli.main train configs/tiny_cpu.yaml
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="contrastive pretraining / fine-tuning from a YAML or TOML config (torchrun-ready)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="training config (.yaml, .yml or .toml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=1e-4 --set train.steps=100 (repeatable)",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    add_json_flag(p)
    p.set_defaults(func=run)


def _log_progress_to_stderr() -> None:
    """Training progress (INFO records of ``biomedclip.train``) as plain lines on stderr."""
    import logging

    logger = logging.getLogger("biomedclip.train")
    if not any(getattr(h, "_biomedclip_train", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._biomedclip_train = True
        logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    from biomedclip.train.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print_json(cfg.to_dict())
        return 0
    from biomedclip.train.trainer import train

    _log_progress_to_stderr()
    summary = train(cfg)
    if "final_model" not in summary:  # not rank 0 of a torchrun job
        return 0
    if args.json:
        print_json(summary)
    else:
        loss, speed = summary["final_loss"], summary["samples_per_s"] or 0.0
        print(
            f"trained {summary['steps']} steps: final loss {loss:.4f}, {speed:.1f} samples/s; "
            f"model in {summary['final_model']}"
        )
    return 0
