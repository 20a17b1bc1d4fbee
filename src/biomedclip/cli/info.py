"""``biomedclip info``: what a model source holds (architecture, parameters, source, sha256)."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import NO_SPEED, add_json_flag, add_model_args, console, print_json

HELP = "show a model's architecture, parameter counts, source files and sha256"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP + ".")
    add_json_flag(p)
    add_model_args(p, speed=NO_SPEED)
    p.set_defaults(func=run)


def describe(model) -> dict:
    """A JSON-ready description of a loaded model."""
    from biomedclip.config import RELEASED_SHA256

    cfg = model.config
    info = model.load_info
    weights = info.weights
    digest = info.sha256
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "source": info.source,
        "weights": weights,
        "config": info.config,
        "tokenizer": info.tokenizer_dir,
        "sha256": digest,
        "is_released_checkpoint": digest == RELEASED_SHA256,
        "embed_dim": cfg.embed_dim,
        "image_tower": f"{cfg.vision.timm_model_name} (timm), {cfg.vision.image_size}px",
        "text_tower": f"BERT {cfg.text.bert.num_hidden_layers}x{cfg.text.bert.hidden_size} "
        f"({cfg.text.hf_model_name}), context {cfg.text.context_length}, proj {cfg.text.proj}",
        "parameters": {
            "total": count(model),
            "image": count(model.visual),
            "text": count(model.text),
            "tensors": len(model.state_dict()),
        },
        "logit_scale": float(model.logit_scale.detach().exp()),
        "dtype": str(model.dtype).replace("torch.", ""),
    }


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import load_from_args

    model, _, _ = load_from_args(args)
    d = describe(model)
    if args.json:
        print_json(d)
        return 0
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for key, value in d.items():
        if key == "parameters":
            value = (
                f"{value['total']:,} total ({value['image']:,} image, {value['text']:,} text; "
                f"{value['tensors']} tensors)"
            )
        t.add_row(key, str(value))
    console().print(t)
    return 0
