"""``biomedclip eval``: the paper's evaluation protocols, one sub-command each.

``zeroshot``, ``linear-probe``, ``few-shot``, ``retrieval`` and ``reproduce``; all encode through
the one engine (``--precision``, ``--backend``), cache image features per (model, dataset, split,
preprocessing), and write the same report (JSON, CSV, Markdown, PNG plots) with ``--out``.
"""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, add_model_args, console, print_json
from biomedclip.cli.image_args import add_image_args

HELP = "evaluate a model: zero-shot, linear probe, few-shot, retrieval, reproduce the paper"
DATASETS_HELP = (
    "a paper dataset (pcam, lc25000_lung, lc25000_colon, tcga_til, rsna_pneumonia), "
    "slake_modality, slake_organ, vqa_rad_organ (read from --data-root), an image folder with "
    "class sub-folders, or a CSV/Parquet with path,label columns"
)
EPILOG = """\
Datasets are read in their public download layout below --data-root (see docs/evaluation.md).
Features are cached (--feature-cache) and reused by every probe, seed and sweep; a killed run
resumes. Bad images are reported and counted (exit code 1), never dropped silently.

examples:
  biomedclip eval zeroshot lc25000_lung --data-root data/ --out report/
  biomedclip eval zeroshot my_folder/ --classnames names.txt --templates paper
  biomedclip eval linear-probe pcam --data-root data/ --fractions 0.01,0.1,1
  biomedclip eval few-shot lc25000_colon --data-root data/ --shots 1,2,4,8,16 --seeds 0,1,2
  biomedclip eval few-shot lc25000_lung --data-root data/ --method coop --coop-epochs 50
  biomedclip eval retrieval pairs.csv --out report/
  biomedclip eval reproduce --data-root data/ --out report/ --tasks zeroshot,linear-probe
  biomedclip eval reproduce --data-root data/ --models hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224,open_clip:ViT-B-16@openai,hf:google/siglip-base-patch16-224
"""


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    if dataset:
        p.add_argument("dataset", metavar="DATASET", help=DATASETS_HELP)
    p.add_argument("--data-root", default=None, metavar="DIR", help="folder holding the datasets")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write results.json/.csv, report.md, plots/ (reproduce: default eval-report/)")  # fmt: skip
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="feature cache (default: ~/.cache/biomedclip/eval-features)")  # fmt: skip
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default: 1000; 0 = none)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the hash split of datasets without an official one (and a val/ "
                        "carved from train/), training subsets, few-shot draws and the bootstrap "
                        "(default: 0)")  # fmt: skip
    p.add_argument("--group-by", default=None, metavar="COLUMN",
                   help="CSV/Parquet datasets: items sharing this column's value (e.g. a patient "
                        "id) are never split apart")  # fmt: skip
    add_json_flag(p)
    add_model_args(p)
    add_image_args(p, slides=True)


def _parser(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=description + "\n\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _register_zeroshot(sub) -> None:
    p = _parser(sub, "zeroshot", "zero-shot classification with the paper's prompts",
                "Zero-shot classification: prompt ensemble per class (mean of normalised text\n"
                "embeddings), accuracy, balanced accuracy, macro-F1, AUROC, top-5, ECE, each\n"
                "with a seeded bootstrap 95% interval; confusion matrix, ROC, reliability plots.")  # fmt: skip
    _common(p)
    p.add_argument("--split", default="test", help="train, val, test or all (default: test)")
    p.add_argument("--classnames", default=None, metavar="FILE",
                   help="class names for the prompts (default for paper datasets: Supp. Table 10's): "
                        "one a line, or JSON (list or {dataset: list})")  # fmt: skip
    p.add_argument("--templates", default=None, metavar="NAME|FILE",
                   help="paper datasets: Supp. Table 10's templates by default; else 'paper' "
                        "(default), model-card, or a file of templates with {} (or {c})")  # fmt: skip
    p.set_defaults(func=run_zeroshot)


def _register_linear_probe(sub) -> None:
    p = _parser(sub, "linear-probe", "logistic-regression probe on frozen features",
                "Linear probe (ELEVATER / clip_benchmark protocol): L2 strength swept on the\n"
                "validation split, refit on train+val, scored on test, at each training fraction.")  # fmt: skip
    _common(p)
    p.add_argument("--fractions", type=_floats, default=[0.01, 0.1, 1.0],
                   help="training fractions (default: 0.01,0.1,1)")  # fmt: skip
    p.set_defaults(func=run_linear_probe)


def _register_few_shot(sub) -> None:
    p = _parser(sub, "few-shot", "k-shot probes or learned prompts (CoOp), over seeds",
                "Few-shot: k images per class, mean +- std over seeds; a linear probe on the\n"
                "features and/or CoOp learned prompts (context vectors through the text tower).")  # fmt: skip
    _common(p)
    p.add_argument(
        "--shots", type=_ints, default=[1, 2, 4, 8, 16], help="k values (default: 1,2,4,8,16)"
    )
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="seeds (default: 0,1,2)")
    p.add_argument("--method", choices=["linear-probe", "coop", "both"], default="linear-probe")
    p.add_argument("--coop-epochs", type=int, default=None,
                   help="CoOp epochs (default: CoOp's by shot count: 50 at 1-2, 100 at 4-8, 200 at 16)")  # fmt: skip
    p.add_argument("--coop-ctx", type=int, default=16, help="CoOp context vectors (default: 16)")
    p.add_argument("--coop-select", choices=["last", "best-val"], default="last",
                   help="CoOp model selection: the last epoch (default, as published: Dassl "
                        "TEST.FINAL_MODEL=last_step) or the best epoch on min(k, 4) validation "
                        "images per class (a deviation, reported as such)")  # fmt: skip
    p.add_argument("--coop-class-specific", action="store_true",
                   help="CoOp: one context per class (CSC) instead of one shared context")  # fmt: skip
    p.set_defaults(func=run_few_shot)


def _register_reproduce(sub) -> None:
    p = _parser(sub, "reproduce", "every paper dataset present: the whole report",
                "Runs the paper's protocol on every dataset of Supp. Table 5 found under\n"
                "--data-root and writes the report with the paper's numbers beside ours.")  # fmt: skip
    _common(p, dataset=False)
    p.add_argument(
        "--tasks",
        default="zeroshot",
        help="zeroshot,linear-probe,few-shot,coop (default: zeroshot)",
    )
    p.add_argument("--datasets", default=None, help="comma-separated subset of the paper datasets")
    p.add_argument("--models", default=None, metavar="A,B,C",
                   help="several models side by side in one report (instead of --model): "
                        "BiomedCLIP hub ids/dirs/files, open_clip:ARCH[@TAG], open_clip:hf-hub:ID, "
                        "open_clip:DIR, hf:DIR or hf:ID (transformers CLIP / SigLIP)")  # fmt: skip
    p.add_argument("--shots", type=_ints, default=[1, 2, 4, 8, 16])
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    p.set_defaults(func=run_reproduce)


def register(sub: argparse._SubParsersAction) -> None:
    from biomedclip.cli import eval_retrieval

    p = sub.add_parser(
        "eval", help=HELP, description="Evaluation protocols; see `biomedclip eval PROTOCOL -h`."
    )
    esub = p.add_subparsers(dest="eval_command", metavar="PROTOCOL", required=True)
    for add in (
        _register_zeroshot,
        _register_linear_probe,
        _register_few_shot,
        eval_retrieval.register,
        _register_reproduce,
    ):
        add(esub)


def context(args: argparse.Namespace, bar=None, model_spec: str | None = None):
    """The :class:`~biomedclip.eval.runner.EvalContext` of the options (loads the model:
    ``model_spec``, default ``--model``; ``open_clip:...`` / ``hf:...`` are baselines)."""
    from pathlib import Path

    from biomedclip.cli.common import (
        backend_provenance,
        encoder_from_args,
        load_from_args,
        settings_from_args,
    )
    from biomedclip.eval.baselines import is_baseline, load_baseline
    from biomedclip.eval.runner import EvalContext, default_cache_dir

    spec = str(model_spec or args.model)
    if is_baseline(spec):
        encoder = load_baseline(spec, args.device, args.cache_dir, settings_from_args(args))
    else:
        if model_spec is not None:
            import copy

            args = copy.copy(args)
            args.model = model_spec
        model, preprocess, tokenizer = load_from_args(args)
        encoder = encoder_from_args(args, model, preprocess, tokenizer)
    _PROVENANCE[spec] = backend_provenance(encoder)
    cache = (
        None
        if args.no_cache
        else Path(args.feature_cache)
        if args.feature_cache
        else default_cache_dir()
    )

    def progress(label: str, total: int):
        if bar is None:
            return None
        task = bar.add_task(f"features {label}", total=total)
        return lambda n: bar.advance(task, n)

    return EvalContext(encoder, Path(args.data_root) if args.data_root else None, cache, spec,
                       args.bootstrap, args.seed, args.group_by, progress)  # fmt: skip


def progress_bar():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from biomedclip.cli.common import err_console

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err_console(), transient=True)  # fmt: skip


#: model spec -> what ran (backend, precision, auto's choice, CPU): each result's settings.backend
_PROVENANCE: dict[str, dict | None] = {}


def finish(args: argparse.Namespace, results, skipped=None, paths=None) -> int:
    """Write the report (``--out``), print JSON or a table; exit 1 when images were left out."""
    from biomedclip.eval.report import write_report
    from biomedclip.io_utils import atomic_write_json

    for r in results:
        if _PROVENANCE.get(r.model):
            r.settings = {**r.settings, "backend": _PROVENANCE[r.model]}
    if paths is None:
        paths = write_report(results, args.out, skipped) if args.out else {}
    elif paths.get("json"):  # written by reproduce before the provenance was added
        atomic_write_json(paths["json"], [r.to_record() for r in results])
    if args.json:
        print_json({"results": [r.to_record() for r in results], "skipped": skipped or {},
                    "report": {k: str(v) for k, v in paths.items()}})  # fmt: skip
    else:
        print_table(results, skipped, paths)
    return 1 if any(r.failures for r in results) else 0


def print_table(results, skipped=None, paths=None) -> None:
    from rich.table import Table

    from biomedclip.eval.report import _setting, headline

    t = Table(title="evaluation (%, 95% bootstrap interval)", title_justify="left")
    for col in ("dataset", "task", "setting", "metric", "value", "95% CI", "n", "failed"):
        t.add_column(col, justify="right" if col in ("value", "95% CI", "n", "failed") else "left")
    for r in results:
        m = headline(r)
        lo, hi = r.ci.get(m, (float("nan"), float("nan")))
        std = r.metrics.get(f"{m}_std")
        value = f"{100 * r.metrics.get(m, float('nan')):.2f}" + (
            f" ± {100 * std:.2f}" if std is not None else ""
        )
        t.add_row(
            r.dataset,
            r.task,
            _setting(r),
            m,
            value,
            f"{100 * lo:.2f}–{100 * hi:.2f}",
            str(r.n),
            str(len(r.failures)),
        )
    c = console()
    c.print(t)
    for name, why in (skipped or {}).items():
        c.print(f"[yellow]not evaluated[/] {name}: {why}")
    for r in results:
        for d in r.settings.get("deviations", []):
            c.print(f"[yellow]deviation from the published protocol[/] {r.dataset} "
                    f"{_setting(r)}: {d}")  # fmt: skip
    for r in results:
        for f in r.failures[:10]:
            c.print(f"[yellow]left out[/] {r.dataset} {f['id']}: {f['error']}")
    if paths:
        c.print(f"report: {paths['markdown']}")


def _load_templates(args, name):
    from biomedclip.eval.protocol import load_templates

    return load_templates(args.templates, name) if args.templates else None


def run_zeroshot(args: argparse.Namespace) -> int:
    from biomedclip.eval.protocol import load_classnames
    from biomedclip.eval.runner import run_zeroshot as run

    with progress_bar() as bar:
        ctx = context(args, bar)
        names = None
        if args.classnames:
            ds = ctx.dataset(args.dataset, args.split)
            names = load_classnames(args.classnames, len(ds.classes), ds.name)
        result = run(ctx, args.dataset, args.split, names, _load_templates(args, args.dataset))
    return finish(args, [result])


def run_linear_probe(args: argparse.Namespace) -> int:
    from biomedclip.eval.runner import run_linear_probe as run

    with progress_bar() as bar:
        results = run(context(args, bar), args.dataset, args.fractions)
    return finish(args, results)


def run_few_shot(args: argparse.Namespace) -> int:
    from biomedclip.eval.coop import CoOpSettings
    from biomedclip.eval.runner import run_coop
    from biomedclip.eval.runner import run_few_shot as run

    with progress_bar() as bar:
        ctx = context(args, bar)
        results = []
        if args.method in ("linear-probe", "both"):
            results += run(ctx, args.dataset, args.shots, args.seeds)
        if args.method in ("coop", "both"):
            settings = CoOpSettings(n_ctx=args.coop_ctx, epochs=args.coop_epochs,
                                    class_specific=args.coop_class_specific,
                                    select=args.coop_select)  # fmt: skip
            results += run_coop(ctx, args.dataset, args.shots, args.seeds, settings=settings)
    return finish(args, results)


def run_reproduce(args: argparse.Namespace) -> int:
    from biomedclip.errors import InputError
    from biomedclip.eval.runner import reproduce

    if not args.data_root:
        raise InputError("reproduce needs --data-root")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    datasets = [d.strip() for d in args.datasets.split(",")] if args.datasets else None
    specs = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else [None]
    with progress_bar() as bar:
        contexts = [context(args, bar, spec) for spec in specs]
        out = args.out or "eval-report"
        results, skipped, paths = reproduce(contexts, out, tasks, datasets, args.shots, args.seeds)
    code = finish(args, results, skipped, paths)
    if not results:
        console().print(f"[red]no paper dataset found under {args.data_root}[/]")
        return 1
    return code
