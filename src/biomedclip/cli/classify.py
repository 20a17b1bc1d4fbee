"""``biomedclip classify``: zero-shot classification of images among free-text labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json, report_error
from biomedclip.cli.image_args import add_image_args

HELP = "zero-shot classify images among labels (the model card's widget in a terminal)"
DESCRIPTION = """\
Classify each IMAGE among the --labels. Each label is turned into a prompt with the template(s),
embedded with the text encoder, and compared with the image embedding; probabilities are a softmax
over labels of logit_scale * cosine similarity. Unreadable files are reported and skipped; the exit
code is 1 when any image failed.

Inputs are recognised by content: JPEG/PNG/TIFF/..., DICOM (windowed: --window lung, or the file's
window), NIfTI (--slices, --plane) and whole-slide images (SVS, NDPI, MRXS, pyramidal TIFF). A slide
is cut into tissue tiles; its result is the mean probability over tiles, with the tiles that score
highest for the top label listed with their level-0 coordinates.

examples:
  biomedclip classify xray.jpg mri.png --labels "chest X-ray, brain MRI, bone X-ray"
  biomedclip classify slide_tiles/*.jpg --labels "adenocarcinoma, squamous cell carcinoma, benign" \\
      --templates paper --top-k 2 --json
  biomedclip classify scan.dcm --labels "lung nodule, normal lung" --window lung
  biomedclip classify brain.nii.gz --labels "glioma, normal brain" --slices 5 --plane axial
  biomedclip classify slide.svs --labels "tumor, normal tissue" --magnification 10
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (JPEG/PNG/TIFF/..., DICOM, NIfTI, whole-slide images)",
    )
    p.add_argument(
        "--labels", required=True, help='comma-separated labels, e.g. "chest X-ray, brain MRI"'
    )
    t = p.add_mutually_exclusive_group()
    t.add_argument(
        "--template",
        action="append",
        default=None,
        metavar="TEMPLATE",
        help="prompt template with {} for the label; repeat for an ensemble "
        '(default: "this is a photo of {}", the model card\'s)',
    )
    t.add_argument(
        "--templates",
        choices=["model-card", "paper"],
        default=None,
        help="a shipped template set: model-card (1 prompt) or paper (3-prompt ensemble)",
    )
    p.add_argument("--top-k", type=int, default=5, help="labels shown per image (default: 5)")
    p.add_argument(
        "--top-tiles",
        type=int,
        default=5,
        metavar="N",
        help="whole slides: tiles listed per slide (default: 5)",
    )
    add_image_args(p, slides=True)
    add_json_flag(p)
    add_model_args(p, batch_size=32)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from biomedclip.prompts import check_prompts, parse_labels

    labels = parse_labels(args.labels)  # refuse bad labels and templates before any heavy import
    check_prompts(labels, args.template or args.templates)
    if args.top_k < 1 or args.top_tiles < 0:
        report_error("--top-k must be >= 1 and --top-tiles >= 0")
        return 2
    from biomedclip.cli.common import backend_provenance, encoder_from_args, load_from_args
    from biomedclip.zeroshot import classify_encoded

    model, preprocess, tokenizer = load_from_args(args)
    encoder = encoder_from_args(args, model, preprocess, tokenizer, job_images=args.images)
    encoder.progress = not args.json and len(args.images) > 1
    classifier = encoder.classifier(labels, args.template or args.templates)
    encoded = encoder.encode_images(args.images)
    result = classify_encoded(encoded, classifier, labels, encoder.logit_scale, args.images)
    results = [_row(result, r, args) for r in range(len(result.probs))]
    failures = [{"image": f.path, "error": f.error} for f in result.failures]
    for f in result.failures:
        report_error(f.error)
    if args.json:
        print_json({"labels": labels, "results": results, "errors": failures,
                    "backend": backend_provenance(encoder)})  # fmt: skip
    else:
        _print_table(results)
        _print_tiles(results)
        if failures:
            console().print(
                f"[yellow]{len(failures)} of {len(args.images)} image(s) could not be read[/]"
            )
    return 1 if failures else 0


def _row(result, r: int, args: argparse.Namespace) -> dict:
    """One output row: an image, a frame/slice of one, or a whole slide (mean over tiles)."""
    from biomedclip.zeroshot import top_tiles

    entry = result.inputs[r]
    k = min(args.top_k, len(result.labels))
    vals, idx = result.probs[r].topk(k)
    top = [
        {"label": result.labels[j], "prob": float(v)} for v, j in zip(vals.tolist(), idx.tolist())
    ]
    slide = entry.get("slide")
    if slide is None:
        name = entry["input"]
        if entry.get("describe"):
            name = f"{name} [{entry['describe']}]"
        return {"image": name, "top": top}
    return {
        "image": entry["input"],
        "slide": True,
        "tiles": slide["tiles"],
        "tissue_tiles": slide.get("tissue_tiles"),
        "level": slide.get("level"),
        "magnification": slide.get("magnification"),
        "tile_size": slide.get("tile_size"),
        "top": top,
        "top_tiles": top_tiles(result, r, args.top_tiles),
    }


def _print_table(results: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("image")
    table.add_column("#", justify="right")
    table.add_column("label")
    table.add_column("prob", justify="right")
    for r in results:
        for rank, item in enumerate(r["top"], 1):
            name = Path(r["image"]).name + (" (slide, mean over tiles)" if r.get("slide") else "")
            table.add_row(
                escape(name) if rank == 1 else "",
                str(rank),
                escape(item["label"]),
                f"{item['prob']:.4f}",
            )
        table.add_row("", "", "", "")
    console().print(table)


def _print_tiles(results: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    for r in results:
        if not r.get("slide") or not r["top_tiles"]:
            continue
        table = Table(
            title=escape(
                f"{Path(r['image']).name}: {r['tiles']} of {r['tissue_tiles']} tissue tile(s) "
                f"at level {r['level']}; top tiles for '{r['top'][0]['label']}' (level-0 x, y)"
            ),
            header_style="bold",
            box=None,
            pad_edge=False,
        )
        for col in ("x", "y", "prob", "tile's top label"):
            table.add_column(col, justify="right" if col != "tile's top label" else "left")
        for t in r["top_tiles"]:
            table.add_row(str(t["x"]), str(t["y"]), f"{t['prob']:.4f}", escape(t["tile_top_label"]))
        console().print(table)
