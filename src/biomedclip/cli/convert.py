"""``biomedclip convert``: a checkpoint (.bin / .pt / .safetensors / hub id) -> a safetensors directory."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, console, print_json

HELP = "convert a checkpoint to a self-contained safetensors model directory"
DESCRIPTION = """\
Load SOURCE (the released open_clip_pytorch_model.bin, an open_clip training checkpoint, a hub id
or a model directory), check it loads strictly, and write OUT_DIR with open_clip_model.safetensors,
open_clip_config.json and the tokenizer files. The result loads offline with
`biomedclip.load(OUT_DIR)` and is verified to reproduce every tensor exactly.

example:
  biomedclip convert ~/Downloads/open_clip_pytorch_model.bin ./biomedclip-safetensors
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="weights file, model directory or hf-hub: id")
    p.add_argument("out_dir", help="output directory (created)")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="directory with tokenizer files, if SOURCE has none beside it",
    )
    p.add_argument("--cache-dir", default=None, help="hub cache directory")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from biomedclip.errors import CheckpointError
    from biomedclip.factory import load, load_model

    model, _, tokenizer = load(args.source, cache_dir=args.cache_dir, tokenizer=args.tokenizer)
    out = model.save_pretrained(args.out_dir, tokenizer=tokenizer)
    reloaded = load_model(out)
    a, b = model.state_dict(), reloaded.state_dict()
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    if bad:
        raise CheckpointError(f"{out}: round trip changed {len(bad)} tensors, e.g. {bad[:3]}")
    summary = {
        "source": args.source,
        "out_dir": str(out),
        "tensors": len(a),
        "parameters": sum(v.numel() for v in a.values()),
        "verified": True,
    }
    if args.json:
        print_json(summary)
    else:
        console().print(
            f"wrote [bold]{out}[/] ({summary['tensors']} tensors, "
            f"{summary['parameters']:,} parameters; reload verified bit-exact)"
        )
    return 0
