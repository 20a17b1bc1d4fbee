"""``biomedclip export FORMAT SOURCE OUT``: the model out to transformers, open_clip or ONNX."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, console, print_json

HELP = "export a model for transformers (hf), open_clip, ONNX or OpenVINO, verified equal"
DESCRIPTION = """\
Write SOURCE (hub id, model directory or weights file) to OUT in another library's format, load it
back with that library, compare its embeddings with this package's on probe inputs, and only then
move it into place with export_manifest.json (source sha256, file sha256s, parity, versions).
`biomedclip convert` is the way in; `export` is the way out.

formats:
  hf         transformers folder: AutoModel / pipeline("zero-shot-image-classification") with
             trust_remote_code=True; config.json, modeling_biomedclip.py, model.safetensors,
             tokenizer and preprocessor_config.json
  open_clip  open_clip.create_model_and_transforms("local-dir:OUT"); --open-clip-spelling old
             for open_clip < 2.23 (which fails on 'hf_proj_type'), new (default) for >= 2.23
  onnx       image.onnx / text.onnx (fp32, dynamic batch and text length) and *.int8.onnx, run
             without torch by biomedclip.onnx.OnnxBiomedCLIP
  openvino   image.xml / text.xml (OpenVINO IR, fp32) and *.int8.xml (NNCF int8, calibrated on
             --calibration DIR or --probe-images); bf16 is a run-time hint on the fp32 IR; run
             without torch by OnnxBiomedCLIP(OUT, "openvino-int8") (needs biomedclip[cpu-fast])

examples:
  biomedclip export hf hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 ./bmc-hf
  biomedclip export open_clip ./my-finetuned ./bmc-openclip --open-clip-spelling old
  biomedclip export onnx ./my-finetuned ./bmc-onnx --variants int8 --probe-images scans/*.png
  biomedclip export openvino ./my-finetuned ./bmc-ov --calibration scans/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=["hf", "open_clip", "onnx", "openvino"], help="output format")
    p.add_argument("source", help="hf-hub: id, model directory or weights file")
    p.add_argument("out", help="output directory (must be empty or absent, see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.add_argument(
        "--open-clip-spelling",
        choices=["new", "old"],
        default="new",
        help="open_clip: config keys for open_clip >= 2.23 (new, default) or older (old)",
    )
    p.add_argument(
        "--variants",
        default=None,
        help="onnx: fp32 and/or int8 (default: fp32,int8); openvino: fp32, int8 and/or bf16 "
        "(default: fp32,int8,bf16); comma-separated",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="DIR",
        help="openvino: real images (and *.txt captions) that int8 is calibrated on (default: "
        "$BIOMEDCLIP_CALIBRATION, else --probe-images)",
    )
    p.add_argument(
        "--probe-images",
        nargs="+",
        default=None,
        metavar="IMAGE",
        help="images for the parity check (default: built-in synthetic images)",
    )
    p.add_argument(
        "--probe-texts",
        default=None,
        metavar="FILE",
        help="text file, one prompt per line, for the parity check (default: built-in prompts)",
    )
    p.add_argument("--cache-dir", default=None, help="hub cache directory")
    add_json_flag(p)
    p.set_defaults(func=run)


def _read_lines(path: str) -> list[str]:
    from pathlib import Path

    from biomedclip.errors import InputError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read probe texts ({e})") from e
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise InputError(f"{path}: no probe texts (one per line)")
    return texts


def _summary(manifest: dict) -> list[tuple[str, ...]]:
    """Rows of the parity table: check, then max |diff| and min cosine of images and texts."""
    rows = []
    for name, p in manifest["parity"].items():
        if "image" not in p:  # a check without embeddings (reload, or open_clip not run)
            detail = ", ".join(f"{k}={v}" for k, v in p.items() if k != "checked")
            rows.append((name, detail, "", "", ""))
            continue
        cells = [
            (f"{p[t]['max_abs_diff']:.1e}", f"{p[t]['min_cosine']:.6f}") for t in ("image", "text")
        ]
        rows.append((name, *cells[0], *cells[1]))
    return rows


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from biomedclip.export import export

    texts = _read_lines(args.probe_texts) if args.probe_texts else None
    default = "fp32,int8,bf16" if args.format == "openvino" else "fp32,int8"
    variants = [v.strip() for v in (args.variants or default).split(",") if v.strip()]
    with console().status(f"exporting to {args.format} and checking parity..."):
        result = export(
            args.format,
            args.source,
            args.out,
            overwrite=args.overwrite,
            probe_images=args.probe_images,
            probe_texts=texts,
            open_clip_spelling=args.open_clip_spelling,
            onnx_variants=variants if args.format != "openvino" else ("fp32", "int8"),
            openvino_variants=variants if args.format == "openvino" else ("fp32", "int8", "bf16"),
            calibration=args.calibration,
            cache_dir=args.cache_dir,
        )
    if args.json:
        print_json({"directory": str(result.directory), **result.manifest})
        return 0
    m = result.manifest
    table = Table(title=f"parity of the {args.format} export with the model")
    for column in ("check", "image max |diff|", "image min cos", "text max |diff|", "text min cos"):
        table.add_column(column)
    for row in _summary(m):
        table.add_row(*row)
    out = console()
    out.print(table)
    size = sum(f["bytes"] for f in m["files"].values())
    out.print(
        f"wrote [bold]{result.directory}[/] ({len(m['files'])} files, {size / 1e6:.1f} MB; "
        f"source sha256 {m['source']['sha256'] or 'n/a (in-memory model)'})"
    )
    return 0
