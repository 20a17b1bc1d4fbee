"""``biomedclip classify``: zero-shot classification of images among free-text labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json, report_error

HELP = "zero-shot classify images among labels (the model card's widget in a terminal)"
DESCRIPTION = """\
Classify each IMAGE among the --labels. Each label is turned into a prompt with the template(s),
embedded with the text encoder, and compared with the image embedding; probabilities are a softmax
over labels of logit_scale * cosine similarity. Unreadable files are reported and skipped; the exit
code is 1 when any image failed.

examples:
  biomedclip classify xray.jpg mri.png --labels "chest X-ray, brain MRI, bone X-ray"
  biomedclip classify slide_tiles/*.jpg --labels "adenocarcinoma, squamous cell carcinoma, benign" \\
      --templates paper --top-k 2 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify", help=HELP, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "chest X-ray, brain MRI"')
    t = p.add_mutually_exclusive_group()
    t.add_argument(
        "--template", action="append", default=None, metavar="TEMPLATE",
        help='prompt template with {} for the label; repeat for an ensemble '
        '(default: "this is a photo of {}", the model card\'s)',
    )
    t.add_argument(
        "--templates", choices=["model-card", "paper"], default=None,
        help="a shipped template set: model-card (1 prompt) or paper (3-prompt ensemble)",
    )
    p.add_argument("--top-k", type=int, default=5, help="labels shown per image (default: 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from biomedclip.cli.common import load_from_args
    from biomedclip.errors import ImageError
    from biomedclip.imaging import load_image
    from biomedclip.zeroshot import build_classifier, classify_features, parse_labels

    labels = parse_labels(args.labels)  # refuse bad labels before loading the model
    if args.top_k < 1:
        report_error("--top-k must be >= 1")
        return 2
    model, preprocess, tokenizer = load_from_args(args)
    templates = args.template or args.templates
    classifier = build_classifier(model, tokenizer, labels, templates)

    results: list[dict] = []
    failures: list[dict] = []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        pixels = torch.stack([t for _, t in pending]).to(model.device, model.dtype)
        with torch.inference_mode():
            feats = model.encode_image(pixels)
        res = classify_features(model, feats, classifier, labels)
        for (name, _), top in zip(pending, res.top_k(args.top_k)):
            results.append({"image": name, "top": [{"label": lb, "prob": p} for lb, p in top]})
        pending.clear()

    for path in args.images:
        try:
            pending.append((path, preprocess(load_image(path, mode=None))))
        except ImageError as e:
            failures.append({"image": path, "error": str(e)})
            report_error(str(e))
        if len(pending) >= args.batch_size:
            flush()
    flush()

    if args.json:
        print_json({"labels": labels, "results": results, "errors": failures})
    else:
        _print_table(results)
        if failures:
            console().print(f"[yellow]{len(failures)} of {len(args.images)} image(s) could not be read[/]")
    return 1 if failures else 0


def _print_table(results: list[dict]) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("image")
    table.add_column("#", justify="right")
    table.add_column("label")
    table.add_column("prob", justify="right")
    for r in results:
        for rank, item in enumerate(r["top"], 1):
            table.add_row(Path(r["image"]).name if rank == 1 else "", str(rank), item["label"],
                          f"{item['prob']:.4f}")
        table.add_row("", "", "", "")
    console().print(table)
