"""``biomedclip slide patch`` (the tissue patch grid of a slide) and ``biomedclip slide features``
(per-slide feature files over a cohort)."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json

PATCH_DESCRIPTION = """\
The tissue patch grid of SLIDE: tissue found on a thumbnail (saturation, with blue / green / black
pen marks rejected, specks dropped and small holes filled), then a grid of PATCH-SIZE px patches
at the target magnification (default 20x = 0.5 um/px) from the slide's own resolution (OpenSlide
mpp, Aperio MPP, TIFF resolution tags, else its objective power). A slide that states no
resolution is refused unless --mpp gives it. Coordinates are level-0 pixels.

examples:
  biomedclip slide patch slide.svs --preview grid.png
  biomedclip slide patch slide.tif --magnification 10 --json
  biomedclip slide patch scan.tif --mpp 0.25 --coords coords.csv
"""

FEATURES_DESCRIPTION = """\
Per-slide patch features for a cohort, in the layout CLAM and TRIDENT read:

  DIR/h5_files/<slide_id>.h5    datasets features [N, 512] (float32) and coords [N, 2] (int64,
                                level-0 x, y); attributes patch_size, patch_size_level0,
                                target_magnification, mpp, slide_mpp, model, model_sha256,
                                precision, preprocessing, slide_id, label, patient_id
  DIR/parquet_files/<id>.parquet with --format parquet or both (x, y, features)
  DIR/done/<slide_id>.json      written after the slide's file(s): the slide is done
  DIR/errors.jsonl              the slides that failed in this run, and why
  DIR/extraction.json           the model and settings of the folder

SLIDES: slide files, a folder (its slide files), a glob ("cohort/**/*.svs"), or a CSV/Parquet
manifest with slide_id, path[, label, patient_id]. Patches stream from the slide (read at the best
pyramid level and resized; no level is held whole) and are decoded while the model runs, with the
same engine, precisions and backends as `biomedclip embed`: a patch's feature equals `embed` of
the same patch saved as PNG. Rerun the same command to resume: finished slides are skipped and
a killed run redoes at most the slide it was on. A slide that cannot be read goes to
errors.jsonl, the rest go on, and the exit code is 1.

examples:
  biomedclip slide features slides/ --out feats/
  biomedclip slide features cohort.csv --out feats/ --precision bf16 --format both
  biomedclip slide features "tcga/**/*.svs" --out feats/ --engine ray --device cuda
"""


def _add_patch_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("patching")
    g.add_argument(
        "--patch-size", type=int, default=224, help="patch side in pixels at the target (224)"
    )
    t = g.add_mutually_exclusive_group()
    t.add_argument(
        "--magnification", type=float, default=None, help="target magnification (default: 20)"
    )
    t.add_argument(
        "--target-mpp",
        type=float,
        default=None,
        help="target microns per pixel instead of a magnification (20x = 0.5)",
    )
    g.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 microns per pixel of slides that do not state their resolution "
        "(without it they are refused; a slide's own metadata wins)",
    )
    g.add_argument(
        "--tissue-fraction",
        type=float,
        default=0.5,
        help="keep a patch when tissue covers at least this fraction of it (default: 0.5)",
    )
    g.add_argument(
        "--no-pen-filter", action="store_true", help="keep patches on blue/green/black ink"
    )
    g.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="pixels one slide read may decode (the decode budget; default: the reader's)",
    )


def _extract_settings(args: argparse.Namespace, fmt: str = "h5"):
    from biomedclip.slide.layout import ExtractSettings
    from biomedclip.slide.patching import PatchSettings
    from biomedclip.slide.tissue import TissueSettings

    patch = PatchSettings(
        patch_size=args.patch_size,
        magnification=args.magnification,
        target_mpp=args.target_mpp,
        slide_mpp=args.mpp,
        tissue_fraction=args.tissue_fraction,
        tissue=TissueSettings(pen=not args.no_pen_filter),
    )
    if args.max_pixels is not None:
        return ExtractSettings(patch=patch, format=fmt, max_pixels=args.max_pixels)
    return ExtractSettings(patch=patch, format=fmt)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "patch",
        help="the tissue patch grid of a slide (coordinates, preview PNG)",
        description=PATCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("slide", metavar="SLIDE")
    p.add_argument("--preview", default=None, metavar="PNG", help="write the grid on a thumbnail")
    p.add_argument("--coords", default=None, metavar="CSV", help="write the coordinates (x, y)")
    _add_patch_args(p)
    add_json_flag(p)
    p.set_defaults(func=run_patch)

    f = sub.add_parser(
        "features",
        help="per-slide feature files (h5_files/<slide_id>.h5) for a cohort, resumable",
        description=FEATURES_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("slides", nargs="+", metavar="SLIDES")
    f.add_argument("--out", "-o", required=True, help="output folder")
    f.add_argument(
        "--format",
        choices=["h5", "parquet", "both"],
        default="h5",
        help="h5 (CLAM/TRIDENT, default), parquet, or both",
    )
    f.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    e = f.add_argument_group("engine")
    e.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default) or ray: slides spread over model actors of a Ray cluster "
        "(the output folder must be shared by its nodes)",
    )
    e.add_argument("--ray-address", default=None, help="Ray cluster (default: RAY_ADDRESS/local)")
    e.add_argument("--ray-actors", type=int, default=None, help="model actors (default: per GPU)")
    e.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs per CPU actor")
    _add_patch_args(f)
    add_json_flag(f)
    add_model_args(f, speed=("precision", "backend", "batch-size", "workers", "compile"))
    f.set_defaults(func=run_features)


def run_patch(args: argparse.Namespace) -> int:
    from biomedclip.imaging.wsi import open_slide
    from biomedclip.slide.patching import plan_patches, preview

    settings = _extract_settings(args)
    with open_slide(args.slide, settings.read_options) as slide:
        plan = plan_patches(slide, settings.patch)
        if args.preview:
            preview(plan, args.preview, slide=slide)
    if args.coords:
        from biomedclip.io_utils import atomic_write_text

        lines = ["x,y"] + [f"{x},{y}" for x, y in plan.coords.tolist()]
        atomic_write_text(args.coords, "\n".join(lines) + "\n")
    summary = {"slide": args.slide, "patches": len(plan.coords), **plan.attrs(), "grid": plan.grid}
    if args.preview:
        summary["preview"] = args.preview
    if args.json:
        print_json({**summary, "coords": plan.coords.tolist()})
    else:
        c = console()
        c.print(
            f"{args.slide}: {len(plan.coords)} tissue patch(es) of {plan.patch_size} px at "
            f"{plan.target_magnification:g}x ({plan.target_mpp:g} um/px; slide {plan.slide_mpp:g} "
            f"um/px from {plan.mpp_source}), {plan.patch_size_level0} px at level 0, read at "
            f"level {plan.level} ({plan.read_size} px)"
        )
        if args.preview:
            c.print(f"preview: {args.preview}")
    return 0


def run_features(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import encoder_from_args, load_from_args
    from biomedclip.embedding.ray_engine import RayOptions
    from biomedclip.slide.cohort import from_inputs
    from biomedclip.slide.features import ERRORS, extract_features

    slides = from_inputs(args.slides)
    settings = _extract_settings(args, args.format)
    model, preprocess, tokenizer = load_from_args(args)
    encoder = encoder_from_args(args, model, preprocess, tokenizer)
    stats = extract_features(
        encoder,
        slides,
        args.out,
        settings,
        model_source=args.model,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        engine=args.engine,
        ray_options=RayOptions(
            address=args.ray_address,
            num_actors=args.ray_actors,
            cpus_per_actor=args.ray_cpus_per_actor,
            device=args.device,
        ),
    )
    summary = {
        "out": args.out,
        "slides": stats.slides,
        "extracted": stats.extracted,
        "already_done": stats.already_done,
        "failed": stats.failed,
        "patches": stats.patches,
        "seconds": round(stats.seconds, 2),
        "patches_per_second": round(stats.rate(), 2),
        "errors_file": f"{args.out}/{ERRORS}" if stats.failed else None,
        "errors": [e.to_dict() for e in stats.errors],
    }
    if args.json:
        print_json(summary)
    else:
        c = console()
        c.print(
            f"{stats.extracted} slide(s) extracted ({stats.patches} patches, "
            f"{stats.rate():.1f}/s) into {args.out}; {stats.already_done} already done, "
            f"{stats.failed} failed"
        )
        for e in stats.errors:
            c.print(f"[red]failed[/] {e.slide_id}: {e.error}", markup=True, soft_wrap=True)
        if stats.failed:
            c.print(f"failures listed in {args.out}/{ERRORS}")
    return 1 if stats.failed else 0
