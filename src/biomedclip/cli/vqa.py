"""``biomedclip vqa train|eval|ask``: visual question answering on BiomedCLIP (METER fusion)."""

from __future__ import annotations

import argparse

from biomedclip.cli.common import add_json_flag, console, print_json

VQA_DATASETS = ("vqa_rad", "vqa_rad_hf", "slake", "pathvqa", "files")

TRAIN_DESCRIPTION = """\
Fine-tune a VQA model: BiomedCLIP image patch tokens and question token states, a METER / M3AE
co-attention fusion (default 6 layers) and an answer classifier. CONFIG is YAML or TOML with
sections model / data / optim / train / output (see configs/vqa_*.yaml); --set overrides a key.
With a frozen image tower the image tokens are computed once and cached (CPU training is
practical). Checkpoints go to OUTPUT/checkpoints/step_N and a rerun resumes from the latest
(exactly: same losses as an uninterrupted run); OUTPUT/final/ is the model for `vqa eval/ask`.

examples:
  biomedclip vqa train configs/vqa_rad.yaml
  biomedclip vqa train configs/vqa_rad.yaml --set data.vocabulary=closed-world --set output.dir=runs/cw
  torchrun --standalone --nproc_per_node 2 -m biomedclip.cli.main vqa train configs/vqa_slake.yaml
"""

EVAL_DESCRIPTION = """\
Score a VQA model on a split: closed / open / overall exact-match accuracy (the headline, as
METER / M3AE score: prediction and gold answer both in the published normalisation, METER / ViLT
normalize_word: lower case, punctuation, number words -> digits, articles dropped), the lenient
score beside it (also yes/no variants folded), token-level F1, per answer type and per
question type, with bootstrap 95 % intervals; writes OUT/report.json, OUT/report.md (with the
published BiomedCLIP + METER numbers alongside) and OUT/predictions.jsonl. Gold answers outside the
model's answer vocabulary count as wrong; the report says how many there were and which vocabulary
(training answers, or closed-world train+val+test) the model was trained with. Questions whose
image cannot be read count as wrong and the command exits 1 with their number; when no image
can be read it stops with an error naming the first path it tried.

examples:
  biomedclip vqa eval --model runs/vqa_rad/final --dataset vqa_rad --root ../shared/data/vqa_rad
  biomedclip vqa eval --model runs/slake/final --dataset slake --root data/slake --split val --json
  biomedclip vqa eval --model runs/x/final --dataset files --file my_questions.csv --out report/
  biomedclip vqa eval --model runs/path/final --dataset pathvqa --root data/pvqa --split test
"""

ASK_DESCRIPTION = """\
Answer a question about one image: prints the top answers with their probabilities. IMAGE may be
any format the imaging reader takes (JPEG, PNG, 16-bit TIFF, DICOM, NIfTI, whole-slide thumbnail).

examples:
  biomedclip vqa ask chest.dcm "Is there a pneumothorax?" --model runs/vqa_rad/final
  biomedclip vqa ask brain.png "What modality is this?" --model runs/slake/final --top-k 3 --json
"""


def _command(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vqa",
        help="visual question answering: train / eval / ask (METER fusion on BiomedCLIP)",
        description="Visual question answering; see `biomedclip vqa COMMAND -h`.",
    )
    sub = p.add_subparsers(dest="vqa_command", metavar="COMMAND", required=True)

    t = _command(sub, "train", "fine-tune from a config", TRAIN_DESCRIPTION)
    t.add_argument("config", help="VQA training config (.yaml, .yml or .toml)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=10 (repeatable)",
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--skip-unreadable", action="store_true",
                   help="train without the questions whose image cannot be read (their number "
                        "is printed); without it, any unreadable training image is an error "
                        "(exit 2) before training starts")  # fmt: skip
    add_json_flag(t)
    t.set_defaults(func=run_train)

    e = _command(sub, "eval", "score a model on a split", EVAL_DESCRIPTION)
    e.add_argument("--model", required=True, help="a VQA model directory (OUTPUT/final)")
    e.add_argument("--dataset", required=True, choices=list(VQA_DATASETS),
                   help="vqa_rad (3,064/451), vqa_rad_hf (1,793/451), slake, pathvqa, files")  # fmt: skip
    e.add_argument("--root", default=None, help="dataset folder (files: base of image paths)")
    e.add_argument("--file", default=None, help="question file (.json/.jsonl/.csv) for 'files'")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--out", default=None, help="folder for report.json / report.md")
    e.add_argument(
        "--feature-cache",
        default=None,
        metavar="DIR",
        help="image-token cache folder (reused by reruns)",
    )
    e.add_argument("--device", default="cpu")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    add_json_flag(e)
    e.set_defaults(func=run_eval)

    a = _command(sub, "ask", "answer a question about an image", ASK_DESCRIPTION)
    a.add_argument("image", help="image file (any supported format)")
    a.add_argument("question", help="the question, in quotes")
    a.add_argument("--model", required=True, help="a VQA model directory (OUTPUT/final)")
    a.add_argument("--top-k", type=int, default=5, help="answers to show (default: 5)")
    a.add_argument("--device", default="cpu")
    add_json_flag(a)
    a.set_defaults(func=run_ask)


def run_train(args: argparse.Namespace) -> int:
    from biomedclip.cli.training_run import run_training_config, vqa_summary_line
    from biomedclip.vqa.config import load_vqa_config

    if args.skip_unreadable:
        args.overrides = [*args.overrides, "data.skip_unreadable=true"]
    return run_training_config(
        args, load_vqa_config, "biomedclip.vqa.trainer:train_vqa", vqa_summary_line
    )


def run_eval(args: argparse.Namespace) -> int:
    from rich.table import Table

    from biomedclip.vqa.evaluate import evaluate_vqa

    report = evaluate_vqa(
        args.model,
        args.dataset,
        args.split,
        args.root,
        args.file,
        args.out,
        args.feature_cache,
        args.device,
        args.batch_size,
        args.workers,
        args.bootstrap,
        progress=not args.json,
    )
    unreadable = report["metrics"]["no_prediction"]
    code = 1 if unreadable else 0
    if args.json:
        print_json(report)
        return code
    m, pub = report["metrics"], report["published"] or {}
    table = Table(
        title=f"{args.dataset} {args.split} ({report['vocabulary']} vocabulary, "
        f"{report['n_answers']} answers)"
    )
    for col in ("subset", "n", "exact match %", "95 % CI", "lenient %", "token F1 %",
                "published %"):  # fmt: skip
        table.add_column(col, justify="left" if col == "subset" else "right")
    for key in ("closed", "open", "overall"):
        s = m[key]
        if not s.get("n"):
            continue
        lo, hi = s["accuracy_ci95"]
        table.add_row(
            key,
            str(s["n"]),
            f"{100 * s['accuracy']:.1f}",
            f"{100 * lo:.1f}-{100 * hi:.1f}",
            f"{100 * s['lenient_accuracy']:.1f}",
            f"{100 * s['f1']:.1f}",
            str(pub.get(key, "-")),
        )
    c = console()
    c.print(table)
    oov = m.get("out_of_vocabulary", {}).get("overall", 0)
    c.print(
        f"{oov} gold answer(s) outside the vocabulary (counted wrong); "
        f"{m['no_prediction']} unreadable image question(s)"
    )
    if args.out:
        c.print(f"reports in {args.out}/report.md and report.json")
    if unreadable:
        c.print(
            f"[red]{unreadable} question(s) without a prediction: their image could not be read[/]"
        )
    return code


def run_ask(args: argparse.Namespace) -> int:
    from biomedclip.vqa.model import load_vqa_model
    from biomedclip.vqa.predict import ask

    model, preprocess, tokenizer = load_vqa_model(args.model, args.device)
    answer = ask(model, preprocess, tokenizer, args.image, args.question, top_k=args.top_k)
    if args.json:
        print_json({"image": args.image, "question": args.question, **answer.to_dict()})
        return 0
    from rich.table import Table

    table = Table(title=args.question)
    table.add_column("answer")
    table.add_column("probability", justify="right")
    for a, p in zip(answer.answers, answer.probabilities):
        table.add_row(a, f"{p:.3f}")
    console().print(table)
    return 0
