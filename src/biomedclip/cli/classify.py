"""``biomedclip classify``: zero-shot classification of images among free-text labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json, report_error
from biomedclip.imaging.cli_args import add_image_args, options_from_args

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
        "--batch-size", type=int, default=32, help="images per forward pass (default: 32)"
    )
    p.add_argument(
        "--top-tiles",
        type=int,
        default=5,
        metavar="N",
        help="whole slides: tiles listed per slide (default: 5)",
    )
    add_image_args(p, slides=True)
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from biomedclip.cli.common import load_from_args
    from biomedclip.errors import ImageError
    from biomedclip.imaging import read_image
    from biomedclip.zeroshot import build_classifier, classify_features, parse_labels

    labels = parse_labels(args.labels)  # refuse bad labels before loading the model
    if args.top_k < 1 or args.top_tiles < 0:
        report_error("--top-k must be >= 1 and --top-tiles >= 0")
        return 2
    options = options_from_args(args, mode=None)  # 8-bit modes as stored: reference parity
    model, preprocess, tokenizer = load_from_args(args)
    templates = args.template or args.templates
    classifier = build_classifier(model, tokenizer, labels, templates)

    def probs_of(tensors: list[torch.Tensor]) -> torch.Tensor:
        pixels = torch.stack(tensors).to(model.device, model.dtype)
        with torch.inference_mode():
            feats = model.encode_image(pixels)
        return classify_features(model, feats, classifier, labels).probs

    results: list[dict] = []
    failures: list[dict] = []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        probs = probs_of([t for _, t in pending])
        for (name, _), row in zip(pending, probs):
            results.append({"image": name, "top": _top(row, labels, args.top_k)})
        pending.clear()

    for path in args.images:
        try:
            record = read_image(path, options)
            if record.metadata.get("format") == "wsi":
                flush()  # keep the output in input order
                results.append(_classify_slide(path, record, preprocess, probs_of, labels, args))
                continue
            tensors = [preprocess(im) for im in record.images]
        except ImageError as e:
            failures.append({"image": path, "error": str(e)})
            report_error(str(e))
            continue
        for i, tensor in enumerate(tensors):
            what = record.describe(i)
            pending.append((f"{path} [{what}]" if what else path, tensor))
            if len(pending) >= args.batch_size:
                flush()
    flush()

    if args.json:
        print_json({"labels": labels, "results": results, "errors": failures})
    else:
        _print_table(results)
        _print_tiles(results)
        if failures:
            console().print(
                f"[yellow]{len(failures)} of {len(args.images)} image(s) could not be read[/]"
            )
    return 1 if failures else 0


def _top(row, labels: list[str], k: int) -> list[dict]:
    vals, idx = row.topk(min(k, len(labels)))
    return [{"label": labels[j], "prob": float(v)} for v, j in zip(vals.tolist(), idx.tolist())]


def _classify_slide(path, record, preprocess, probs_of, labels, args) -> dict:
    """Mean probability over a slide's tiles, and the tiles that score highest for the top label."""
    import torch
    from rich.progress import Progress

    from biomedclip.cli.common import err_console

    items = record.metadata["items"]
    chunks = []
    with Progress(console=err_console(), transient=True, disable=args.json) as progress:
        task = progress.add_task(f"tiles of {path}", total=len(record.images))
        for start in range(0, len(record.images), args.batch_size):
            batch = record.images[start : start + args.batch_size]
            chunks.append(probs_of([preprocess(im) for im in batch]))
            progress.advance(task, len(batch))
    probs = torch.cat(chunks)
    mean = probs.mean(dim=0)
    best = int(mean.argmax())
    order = probs[:, best].argsort(descending=True)[: args.top_tiles].tolist()
    meta = record.metadata
    return {
        "image": path,
        "slide": True,
        "tiles": len(items),
        "tissue_tiles": meta.get("tissue_tiles"),
        "level": meta.get("level"),
        "magnification": meta.get("magnification"),
        "tile_size": meta.get("tile_size"),
        "top": _top(mean, labels, args.top_k),
        "top_tiles": [
            {
                "x": items[i]["x"],
                "y": items[i]["y"],
                "level": items[i]["level"],
                "label": labels[best],
                "prob": float(probs[i, best]),
                "tile_top_label": labels[int(probs[i].argmax())],
            }
            for i in order
        ],
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
