"""``biomedclip slide zeroshot | eval | mil | heatmap``: the analysis half of ``biomedclip slide``
(patching and feature extraction are in :mod:`biomedclip.cli.slide`, which registers these)."""

from __future__ import annotations

import argparse
from pathlib import Path

from biomedclip.cli.common import NO_SPEED, add_json_flag, add_model_args, console, print_json

ZS_DESC = """\
Slide-level zero-shot (MI-Zero / CONCH): each patch's cosine similarity to each class's prompt
ensemble, pooled into a slide score per class by the mean of its top-K patches (--pooling; 'mean'
= all patches). Prints the prediction and, per class, the top patches with level-0 coordinates.

FEATURES are feature files (DIR/h5_files/<slide_id>.h5, .parquet) or folders holding h5_files/.

examples:
  biomedclip slide zeroshot feats/ --labels "lung adenocarcinoma, normal lung tissue"
  biomedclip slide zeroshot feats/h5_files/S01.h5 --labels "tumor, normal" --pooling 50 --json
"""
EVAL_DESC = """\
Evaluate a cohort (CSV: slide_id,label[,patient_id]) from its feature files: slide-level zero-shot
under each pooling (top-K, K in --poolings, and mean), and with --mil RUN the patient-grouped
cross-validated ABMIL and mean-pool + logistic-regression classifiers (as `slide mil`), in one
table: balanced accuracy, weighted F1 and AUROC with 95% bootstrap intervals over slides.

Prompts: each class's prompt is its label, or --prompt LABEL=TEXT (repeat).

examples:
  biomedclip slide eval --cohort cohort.csv --features feats/ --prompt "tumor=lung adenocarcinoma" \\
      --prompt "normal=normal lung tissue" --templates paper --mil runs/mil --out report.md
"""
MIL_DESC = """\
Cross-validate slide classifiers on the feature files: gated attention MIL (ABMIL, Ilse et al.
2018) and a mean-pool + logistic-regression baseline. Folds are stratified by label and grouped
by patient (no patient in two folds); inside each training fold a patient-grouped validation split
drives early stopping (ABMIL) and the choice of C (LR). Seeded. Each finished fold is written
atomically (RUN/folds/fold_<i>.json, RUN/models/fold_<i>.safetensors): a rerun resumes.
RUN/predictions.csv holds every slide's out-of-fold probabilities; RUN/summary.json the metrics.

examples:
  biomedclip slide mil --cohort cohort.csv --features feats/ --out runs/mil --folds 5
"""
HEAT_DESC = """\
A heatmap over a slide: each patch's cosine similarity to --text, or its ABMIL attention
(--mil RUN/models/fold_0.safetensors), painted over the slide's thumbnail with a colour-bar legend.

SLIDE is a slide file (its features: --features FILE, or --features DIR for
DIR/h5_files/<slide_id>.h5, the id being the file name without its extension), or a feature file
(the slide it names, if present, gives the thumbnail; else a plain canvas).

examples:
  biomedclip slide heatmap S01.svs --features feats/ --text "tumor" --out S01_tumor.png
  biomedclip slide heatmap feats/h5_files/S01.h5 --mil runs/mil/models/fold_0.safetensors
"""


def _cohort_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", required=True, help="CSV/TSV/Parquet: slide_id,label[,patient_id]")
    p.add_argument("--features", required=True, help="folder with h5_files/<slide_id>.h5")
    p.add_argument("--classes", default=None, help="class order (default: sorted labels; for two "
                   "classes the second is the positive one)")  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of folds, training and bootstrap")


def _prompt_args(p: argparse.ArgumentParser, labels: bool) -> None:
    if labels:
        p.add_argument("--labels", required=True, help='comma-separated classes, e.g. "a, b"')
    p.add_argument("--prompt", action="append", default=[], metavar="LABEL=TEXT",
                   help="the prompt text of a class (default: the label itself); repeat")  # fmt: skip
    p.add_argument("--templates", default="paper", help="template set (paper, model-card) or one "
                   "template with {} (default: paper)")  # fmt: skip
    p.add_argument("--poolings", default="1,5,10,50,100,mean", help="poolings to report: "
                   "top-K means and mean pooling (default: "
                   "%(default)s)")  # fmt: skip


def _mil_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cross-validation")
    g.add_argument("--folds", type=int, default=5, help="k of the k-fold (default: 5)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="validation share (0.2)")
    g.add_argument("--models", default="abmil,meanpool-lr", help="(default: %(default)s)")
    g.add_argument("--epochs", type=int, default=None, help="ABMIL max epochs")
    g.add_argument("--lr", type=float, default=None, help="ABMIL learning rate")
    g.add_argument("--patience", type=int, default=None, help="ABMIL early-stopping patience")


def _sub(slide_sub, name, help, description):
    return slide_sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(slide_sub: argparse._SubParsersAction) -> None:
    """Add ``zeroshot``, ``eval``, ``mil`` and ``heatmap`` to the ``slide`` sub-parsers."""
    p = _sub(slide_sub, "zeroshot", "slide-level zero-shot with top-K pooling", ZS_DESC)
    p.add_argument("features", nargs="+", metavar="FEATURES", help="feature files or folders")
    _prompt_args(p, labels=True)
    p.add_argument(
        "--pooling", default=None, help="headline pooling (default: first of --poolings)"
    )
    p.add_argument("--top-k", type=int, default=5, help="top patches listed per class (default 5)")
    add_json_flag(p)
    add_model_args(p, speed=NO_SPEED)
    p.set_defaults(func=run_zeroshot)

    p = _sub(
        slide_sub, "eval", "cohort table: zero-shot per pooling (+ MIL CV) with CIs", EVAL_DESC
    )
    _cohort_args(p)
    _prompt_args(p, labels=False)
    p.add_argument("--mil", default=None, metavar="RUN", help="also cross-validate into RUN")
    p.add_argument("--out", default=None, help="write the table (Markdown) and OUT.json")
    _mil_args(p)
    add_json_flag(p)
    add_model_args(p, speed=NO_SPEED)
    p.set_defaults(func=run_eval)

    p = _sub(slide_sub, "mil", "cross-validate ABMIL and mean-pool LR (patient-grouped)", MIL_DESC)
    _cohort_args(p)
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (resumable)")
    _mil_args(p)
    add_json_flag(p)
    p.set_defaults(func=run_mil)

    p = _sub(
        slide_sub, "heatmap", "patch-score heatmap over a slide (text or attention)", HEAT_DESC
    )
    p.add_argument("slide", metavar="SLIDE", help="a slide file or a feature file")
    p.add_argument("--features", default=None, help="feature folder or file")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--text", help="colour by cosine similarity to this text")
    how.add_argument("--mil", metavar="MODEL", help="colour by this ABMIL model's attention")
    p.add_argument("--out", default="heatmap.png", help="output PNG (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=1024, help="thumbnail size (default 1024)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--top-k", type=int, default=5, help="top patches listed (default 5)")
    add_json_flag(p)
    add_model_args(p, speed=NO_SPEED)
    p.set_defaults(func=run_heatmap)


# ---- helpers (imported in run) ----------------------------------------------------------------
def _feature_files(items: list[str]) -> list[Path]:
    from biomedclip.errors import InputError
    from biomedclip.slide.features_file import H5_DIR, PARQUET_DIR

    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            sub = p / H5_DIR if (p / H5_DIR).is_dir() else p / PARQUET_DIR
            files = sorted(sub.glob("*.h5")) or sorted(sub.glob("*.parquet"))
            if not files:
                raise InputError(f"{p}: no feature files under {H5_DIR}/ or {PARQUET_DIR}/")
            out += files
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such feature file or folder")
    return out


def _prompts(classes: list[str], given: list[str]) -> list[str]:
    from biomedclip.errors import InputError

    table = {}
    for item in given:
        label, sep, text = item.partition("=")
        if not sep or not label.strip() or not text.strip():
            raise InputError(f"--prompt {item!r}: use LABEL=TEXT")
        if label.strip() not in classes:
            raise InputError(f"--prompt {item!r}: {label.strip()!r} is not a class ({classes})")
        table[label.strip()] = text.strip()
    return [table.get(c, c) for c in classes]


def _encoder(args):
    from biomedclip.cli.common import encoder_from_args, load_from_args

    model, preprocess, tokenizer = load_from_args(args)
    return encoder_from_args(args, model, preprocess, tokenizer)


def _classes(args):
    from biomedclip.prompts import parse_labels

    return parse_labels(args.classes) if args.classes else None


def _cv_config(args):
    from dataclasses import replace

    from biomedclip.slide.crossval import CVConfig
    from biomedclip.slide.mil import MILConfig

    mil = MILConfig(seed=args.seed)
    for field, value in (("max_epochs", args.epochs), ("lr", args.lr), ("patience", args.patience)):
        if value is not None:
            mil = replace(mil, **{field: value})
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    return CVConfig(args.folds, args.seed, args.val_fraction, models, mil)


def _cross_validate(args, cohort, bags, run_dir):
    from biomedclip.cli.eval import progress_bar
    from biomedclip.slide.crossval import cross_validate

    cfg = _cv_config(args)
    with progress_bar() as bar:
        task = bar.add_task("cross-validation folds", total=cfg.folds)
        return cross_validate(cohort, bags, run_dir, cfg, args.bootstrap,
                              progress=lambda f, n, done: bar.advance(task))  # fmt: skip


def _print_rows(rows, title: str) -> None:
    from rich.table import Table

    from biomedclip.slide.report import HEADERS, table_rows

    t = Table(title=title, title_justify="left")
    for h in HEADERS:
        if h == "method":
            t.add_column(h, no_wrap=True)
        else:
            t.add_column(h, justify="right")
    for cells in table_rows(rows):
        t.add_row(*cells)
    console().print(t)


# ---- commands ---------------------------------------------------------------------------------
def run_zeroshot(args: argparse.Namespace) -> int:
    from biomedclip.prompts import parse_labels
    from biomedclip.slide.features_file import read_features
    from biomedclip.slide.zeroshot import class_embeddings, parse_poolings, zero_shot_slide

    labels = parse_labels(args.labels)
    poolings = parse_poolings(args.poolings)
    headline = parse_poolings(args.pooling)[0] if args.pooling else poolings[0]
    files = _feature_files(args.features)
    enc = _encoder(args)
    weights = class_embeddings(enc, _prompts(labels, args.prompt), args.templates)
    results, failures = [], []
    for f in files:
        try:
            sf = read_features(f)
            results.append(zero_shot_slide(sf, weights, labels, enc.logit_scale, poolings,
                                           headline, args.top_k, f.stem))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one bad file never loses the rest
            failures.append({"file": str(f), "error": str(e)})
    if args.json:
        print_json({"results": [r.to_dict() for r in results], "failures": failures})
    else:
        c = console()
        for r in results:
            probs = ", ".join(f"{lab} {p:.3f}" for lab, p in zip(r.labels, r.probs))
            c.print(f"[bold]{r.slide_id}[/]: {r.prediction} ({r.pooling}; {probs}; "
                    f"{r.n_patches} patches)")  # fmt: skip
            for p in r.top_patches[r.prediction]:
                c.print(f"    top patch x={p['x']} y={p['y']} similarity {p['score']:.4f}")
        for f in failures:
            c.print(f"[red]failed[/] {f['file']}: {f['error']}")
    return 1 if failures else 0


def run_mil(args: argparse.Namespace) -> int:
    from biomedclip.slide.labelled import load_bags, read_labelled_cohort
    from biomedclip.slide.report import cv_rows

    cohort = read_labelled_cohort(args.cohort, _classes(args))
    bags = load_bags(cohort, args.features)
    summary = _cross_validate(args, cohort, bags, Path(args.out))
    if args.json:
        print_json(summary)
    else:
        _print_rows(cv_rows(summary), f"{cohort.source}: {len(cohort)} slides, "
                    f"{summary['patients']} patients, {args.folds}-fold patient-grouped CV")  # fmt: skip
        console().print(f"predictions: {Path(args.out) / 'predictions.csv'}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from biomedclip.io_utils import atomic_write_json, atomic_write_text
    from biomedclip.slide.labelled import load_bags, read_labelled_cohort
    from biomedclip.slide.report import cv_rows, markdown, zero_shot_cohort
    from biomedclip.slide.zeroshot import class_embeddings, parse_poolings

    cohort = read_labelled_cohort(args.cohort, _classes(args))
    bags = load_bags(cohort, args.features)
    enc = _encoder(args)
    prompts = _prompts(cohort.classes, args.prompt)
    weights = class_embeddings(enc, prompts, args.templates)
    rows, per_slide = zero_shot_cohort(cohort, bags, weights, enc.logit_scale,
                                       parse_poolings(args.poolings), args.bootstrap, args.seed)  # fmt: skip
    if args.mil:
        rows = cv_rows(_cross_validate(args, cohort, bags, Path(args.mil))) + rows
    title = (f"{cohort.source}: {len(cohort)} slides, {len(set(cohort.patients))} patients, "
             f"classes {cohort.classes}")  # fmt: skip
    doc = {"cohort": cohort.source, "classes": cohort.classes, "prompts": prompts, "rows": rows,
           "slides": [r.to_dict() for r in per_slide]}  # fmt: skip
    if args.out:
        out = Path(args.out)
        atomic_write_text(out, markdown(rows, title))
        atomic_write_json(out.with_suffix(".json"), doc)
    if args.json:
        print_json(doc)
    else:
        _print_rows(rows, title)
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    from biomedclip.errors import InputError
    from biomedclip.slide.cohort import slide_id_of
    from biomedclip.slide.features_file import read_features
    from biomedclip.slide.heatmap import slide_file, slide_heatmap, text_scores
    from biomedclip.slide.labelled import feature_path

    src = Path(args.slide)
    if not src.is_file():
        raise InputError(f"{src}: no such slide or feature file")
    if src.suffix.lower() in (".h5", ".parquet"):
        feat_file, slide_path = src, None
    elif args.features and Path(args.features).is_file():
        feat_file, slide_path = Path(args.features), src
    elif args.features:
        feat_file, slide_path = feature_path(args.features, slide_id_of(src)), src
    else:
        raise InputError(f"{src}: pass --features (the folder or file of its patch features)")
    sf = read_features(feat_file)
    slide_path = slide_path or slide_file(sf, feat_file)
    if args.text:
        from biomedclip.slide.zeroshot import class_embeddings

        weights = class_embeddings(_encoder(args), [args.text], "{}")
        scores, title = text_scores(sf, weights[0]), f'cosine similarity to "{args.text}"'
    else:
        from biomedclip.slide.mil import attention_scores, load_mil

        model, _ = load_mil(args.mil)
        if model.in_dim != sf.features.shape[1]:
            raise InputError(f"{args.mil}: expects {model.in_dim}-d features, "
                             f"{feat_file} has {sf.features.shape[1]}-d")  # fmt: skip
        scores, title = (
            attention_scores(model, sf.features),
            f"ABMIL attention ({Path(args.mil).name})",
        )
    hm = slide_heatmap(sf, scores, slide_path, title, args.max_side, args.alpha)
    from biomedclip.explain.render import save_png

    save_png(hm.image, args.out)
    order = scores.argsort()[::-1][: args.top_k]
    top = [{"x": int(sf.coords[i, 0]), "y": int(sf.coords[i, 1]), "score": float(scores[i])}
           for i in order]  # fmt: skip
    doc = {"out": str(args.out), "features": str(feat_file),
           "slide": str(slide_path) if slide_path else None, "min": hm.vmin, "max": hm.vmax,
           "top_patches": top}  # fmt: skip
    if args.json:
        print_json(doc)
    else:
        c = console()
        c.print(f"heatmap: {args.out} ({title}; {hm.vmin:.4f} to {hm.vmax:.4f})")
        for p in top:
            c.print(f"    top patch x={p['x']} y={p['y']} score {p['score']:.4f}")
    return 0
