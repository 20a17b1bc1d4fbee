"""``biomedclip embed``: embed images or texts into .npy / .json, or a resumable Parquet dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json, report_error
from biomedclip.cli.image_args import add_image_args

HELP = "embed images or texts (files, folders, CSV/Parquet, text files, WebDataset shards)"
DESCRIPTION = """\
Embed INPUTS with BiomedCLIP. INPUTS is one of: image files; one folder (searched recursively);
one CSV/TSV/Parquet table with an image path column (path/image/filepath/file) and/or a caption
column (caption/text), other columns kept as metadata; one .txt file (one text per line);
WebDataset shards (.tar, brace ranges like data-{000..009}.tar; KEY.jpg/png + KEY.txt + KEY.json).
Or give texts with --text.

--out FILE.npy   an [N, D] float32 array of L2-normalised embeddings, in input order
--out FILE.json  ids + embeddings + errors
--out DIR        a Parquet dataset (part-*.parquet + manifest.json + errors.jsonl) for
                 `biomedclip index build`; resumable: rerun the same command to finish a killed job
(no --out)       a summary table, or all embeddings with --json

Images are decoded by DataLoader worker processes while the model runs; texts are sorted by length
and padded only to the longest in each batch. --precision fp32 is exact; bf16 runs under autocast
(fast on CPUs with AVX512-BF16/AMX and on GPUs; cosine >= 0.999 to fp32); --backend onnx-int8
is the fastest CPU path for images (ONNX Runtime, int8 weights; exported once per model and cached
under ~/.cache/biomedclip/onnx or $BIOMEDCLIP_CACHE). DICOM, NIfTI and whole slides are read with
the medical-image options below (as in `biomedclip classify`). Unreadable inputs are
listed (errors.jsonl for datasets) and the run goes on; the exit code is 1 when any input failed.

examples:
  biomedclip embed a.jpg b.png --out emb.npy
  biomedclip embed --text "chest x-ray" --text "brain mri" --out t.json
  biomedclip embed ../shared/data/slake/imgs --out slake_emb/ --precision bf16
  biomedclip embed ct_series/ --window lung --out ct_emb/
  biomedclip embed slide.svs --magnification 10 --parts each --out tiles.json
  biomedclip embed pairs.csv --modality both --out pairs_emb/
  biomedclip embed "pmc-{000000..000009}.tar" --modality both --out pmc_emb/ --engine ray
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image files, a folder, a table, a text file, or shards",
    )
    p.add_argument(
        "--text", action="append", default=[], metavar="TEXT", help="a text to embed (repeatable)"
    )
    p.add_argument(
        "--out",
        "-o",
        default=None,
        help="FILE.npy, FILE.json, or a directory for a Parquet dataset",
    )
    p.add_argument(
        "--modality",
        choices=["auto", "image", "text", "both"],
        default="auto",
        help="what to embed: auto = images if the input has them, else texts "
        "(both: images and their captions)",
    )
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default) or ray: Ray Data model actors on a Ray cluster",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS or a local Ray instance)",
    )
    g.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        help="model actors (default: one per GPU, or per --ray-cpus-per-actor CPUs)",
    )
    g.add_argument(
        "--ray-cpus-per-actor", type=float, default=1.0, help="CPUs per CPU actor (default: 1)"
    )
    o = p.add_argument_group("output dataset")
    o.add_argument(
        "--storage-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="embedding values in the Parquet files (default: float32)",
    )
    o.add_argument(
        "--overwrite", action="store_true", help="start the dataset afresh instead of resuming"
    )
    o.add_argument(
        "--rows-per-part",
        type=int,
        default=50_000,
        help="rows per part file once the job completes; while it runs every batch is written "
        "at once as its own small file (default: 50000)",
    )
    t = p.add_argument_group("table inputs")
    t.add_argument("--path-column", default=None, help="image path column of a CSV/Parquet")
    t.add_argument("--caption-column", default=None, help="caption column of a CSV/Parquet")
    t.add_argument("--id-column", default=None, help="id column (default: id, else the path)")
    t.add_argument(
        "--root",
        default=None,
        help="folder that relative paths in a table are relative to (default: the table's folder)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--parts",
        choices=["mean", "each"],
        default="mean",
        help="multi-image inputs (DICOM frames with --frames all, NIfTI --slices N, whole-slide "
        "tiles): one row per input with the mean embedding (default), or one row per image "
        "with ids like ID#frame=5, ID#axial=40, ID#tile=x224,y0,l0",
    )
    add_image_args(p, slides=True)
    add_json_flag(p)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from biomedclip.cli.common import settings_from_args
    from biomedclip.embedding import EmbedConfig, embed_source, embed_to_dataset, sources
    from biomedclip.embedding.engine import modalities_for
    from biomedclip.errors import InputError
    from biomedclip.factory import load

    source = sources.from_inputs(
        args.inputs, args.text, args.path_column, args.caption_column, args.id_column, args.root
    )
    cfg = EmbedConfig(
        **vars(settings_from_args(args)),
        storage_dtype=args.storage_dtype,
        parts=args.parts,
        modality=args.modality,
        rows_per_part=args.rows_per_part,
        progress=not args.no_progress,
    )
    mods = modalities_for(source, cfg.modality)
    out = Path(args.out) if args.out else None
    file_out = out is not None and out.suffix.lower() in (".npy", ".json")
    if file_out and out.suffix.lower() == ".npy" and len(mods) > 1:
        raise InputError(f"{out}: a .npy file holds one modality; use --modality image or text")
    if args.engine == "ray" and (out is None or file_out):
        raise InputError("--engine ray writes a Parquet dataset: give --out DIR")
    # weights stay fp32: bf16/fp16 are applied by autocast in the engine
    model, preprocess, tokenizer = load(args.model, device=args.device, cache_dir=args.cache_dir)
    if out is not None and not file_out:
        from biomedclip.embedding.ray_engine import RayOptions

        stats = embed_to_dataset(
            model,
            preprocess,
            tokenizer,
            source,
            out,
            cfg,
            model_source=args.model,
            overwrite=args.overwrite,
            engine=args.engine,
            ray_options=RayOptions(
                address=args.ray_address,
                num_actors=args.ray_actors,
                cpus_per_actor=args.ray_cpus_per_actor,
                device=args.device,
            ),
        )
        summary = {
            "out": str(out),
            "images": stats.images,
            "texts": stats.texts,
            "failed": stats.failed,
            "already_done": stats.skipped,
            "truncated_texts": stats.truncated_texts,
            "seconds": round(stats.seconds, 2),
            "per_second": round(stats.rate(), 2),
            "errors_file": str(out / "errors.jsonl") if stats.failed else None,
        }
        if args.json:
            print_json(summary)
        else:
            c = console()
            c.print(
                f"embedded {stats.images} image(s) and {stats.texts} text(s) into {out} "
                f"in {stats.seconds:.1f}s ({stats.rate():.1f}/s); "
                f"{stats.skipped} already done, {stats.failed} failed"
            )
            if stats.truncated_texts:
                c.print(
                    f"{stats.truncated_texts} text(s) were truncated to "
                    f"{model.config.text.context_length} tokens"
                )
            if stats.failed:
                c.print(f"failures listed in {out / 'errors.jsonl'}")
        return 1 if stats.failed else 0

    if len(source) <= max(cfg.batch_size, 16):  # a few inputs: no progress bar
        cfg.progress = False
    results = {m: embed_source(model, preprocess, tokenizer, source, cfg, m) for m in mods}
    failures = [f for f in next(iter(results.values())).failures]
    for f in failures:
        report_error(f.error)
    if file_out:
        _write_file(out, results, failures, args.model)
    if args.json and not file_out:
        print_json(_as_json(results, failures, args.model))
    elif not args.json:
        _print_table(results, out)
    elif file_out:
        print_json(
            {
                "out": str(out),
                "count": sum(len(r.ids) for r in results.values()),
                "failed": len(failures),
            }
        )
    return 1 if failures else 0


def _as_json(results, failures, model: str) -> dict:
    items = []
    for mod, r in results.items():
        items += [
            {"id": i, "modality": mod, "embedding": [round(float(x), 7) for x in v]}
            for i, v in zip(r.ids, r.embeddings)
        ]
    dim = next((r.embeddings.shape[1] for r in results.values() if len(r.ids)), None)
    return {
        "model": model,
        "dim": dim,
        "normalized": True,
        "items": items,
        "errors": [f.to_dict() for f in failures],
    }


def _write_file(out: Path, results, failures, model: str) -> None:
    import io

    import numpy as np

    from biomedclip.io_utils import atomic_write_bytes, atomic_write_json

    if out.suffix.lower() == ".json":
        atomic_write_json(out, _as_json(results, failures, model))
        return
    (r,) = results.values()
    buf = io.BytesIO()
    np.save(buf, r.embeddings.astype(np.float32))
    atomic_write_bytes(out, buf.getvalue())


def _print_table(results, out: Path | None) -> None:
    from rich.table import Table

    c = console()
    for mod, r in results.items():
        if out is not None:
            c.print(
                f"wrote {len(r.ids)} {mod} embedding(s) of dimension "
                f"{r.embeddings.shape[1] if len(r.ids) else 0} to {out}"
            )
            continue
        table = Table(title=f"{mod} embeddings ({len(r.ids)})")
        table.add_column("id", overflow="fold")
        table.add_column("dim", justify="right")
        table.add_column("first values")
        for i, v in zip(r.ids, r.embeddings):
            table.add_row(i, str(len(v)), " ".join(f"{x:+.4f}" for x in v[:6]) + " ...")
        c.print(table)
