"""``biomedclip train CONFIG [--set key=value ...]``: contrastive pretraining / fine-tuning."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag

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


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.training_run import contrastive_summary_line, run_training_config
    from biomedclip.train.config import load_config

    return run_training_config(
        args, load_config, "biomedclip.train.trainer:train", contrastive_summary_line
    )
