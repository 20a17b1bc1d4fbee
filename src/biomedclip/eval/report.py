"""Reports: ``results.json`` (one clip_benchmark-style record per dataset x task x model),
``results.csv`` (one row per metric), ``report.md`` (the paper's Supp. Table 5 beside ours, with
the difference and our 95 % bootstrap interval; then probes and few-shot) and the PNG plots."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from biomedclip.eval.protocol import PAPER_DATASETS, PAPER_MEAN, protocol_deviations
from biomedclip.eval.results import EvalResult
from biomedclip.io_utils import atomic_write_json, atomic_write_text

CSV_FIELDS = (
    "dataset",
    "task",
    "model",
    "split",
    "setting",
    "metric",
    "value",
    "ci_low",
    "ci_high",
)


def _setting(r: EvalResult) -> str:
    s = r.settings
    if "k" in s:
        return f"k={s['k']}"
    if "train_fraction" in s:
        return f"{100 * s['train_fraction']:g}%"
    return ""


def csv_text(results: Sequence[EvalResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for r in results:
        for name, value in r.metrics.items():
            lo, hi = r.ci.get(name, (math.nan, math.nan))
            w.writerow([r.dataset, r.task, r.model, r.split, _setting(r), name, value, lo, hi])
    return buf.getvalue()


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.2f}"


def headline(r: EvalResult) -> str:
    """The metric the paper reports for the dataset (accuracy unless it says AUROC)."""
    spec = PAPER_DATASETS.get(r.dataset)
    if spec:
        return spec.metric
    return "auroc" if "acc1" not in r.metrics else "acc1"


def deviations(r: EvalResult) -> list[str]:
    """How the zero-shot run ``r`` differs from the paper's protocol (empty: it does not)."""
    st = r.settings
    return protocol_deviations(
        r.dataset, st.get("classnames"), st.get("templates"), headline(r),
        st.get("dataset_classes"),
    )  # fmt: skip


def paper_table(results: Sequence[EvalResult]) -> str:
    """Markdown: dataset, metric, paper, ours [CI], and "ours - paper" only where the protocol
    (prompts, split, metric) is the paper's; the deviations are listed under the table."""
    zs = [r for r in results if r.task == "zeroshot_classification"]
    if not zs:
        return ""
    lines = [
        "| dataset | model | metric | paper (Supp. Table 5) | ours [95% CI] | ours - paper |",
        "|---|---|---|---:|---:|---:|",
    ]
    notes: list[str] = []
    ours, paper = [], []
    for r in zs:
        m = headline(r)
        spec = PAPER_DATASETS.get(r.dataset)
        value = r.metrics.get(m, math.nan)
        lo, hi = r.ci.get(m, (math.nan, math.nan))
        p = spec.paper if spec else None
        dev = deviations(r) if spec else []
        if p is None:
            diff = ""
        elif dev:
            diff = f"not comparable ({'; '.join(d.split(':')[0] for d in dev)})"
            notes += [f"- {spec.title}: {d}" for d in dev]
        elif math.isnan(value):
            diff = ""
        else:
            diff = f"{100 * value - p:+.2f}"
            ours.append(100 * value)
            paper.append(p)
        lines.append(
            f"| {spec.title if spec else r.dataset} | {r.model} | "
            f"{'AUROC' if m == 'auroc' else 'accuracy'} | {p if p is not None else ''} | "
            f"{_pct(value)} [{_pct(lo)}, {_pct(hi)}] | {diff} |"
        )
    if ours:
        label = "mean" if len(ours) == len(PAPER_DATASETS) else f"mean of these {len(ours)}"
        paper_mean = PAPER_MEAN if len(ours) == len(PAPER_DATASETS) else float(np.mean(paper))
        lines.append(
            f"| **{label}** | | | {paper_mean:.2f} | {np.mean(ours):.2f} | "
            f"{np.mean(ours) - paper_mean:+.2f} |"
        )
    prompts = []
    for r in zs:
        if r.settings.get("templates"):
            prompts.append(
                f"- {r.dataset}: class names {r.settings.get('classnames')}, templates "
                f"{r.settings.get('templates')} ({r.settings.get('prompts', 'given')})"
            )
    out = "\n".join(lines)
    if notes:
        out += "\n\nDeviations from the paper's protocol (no difference is printed for them):\n\n"
        out += "\n".join(dict.fromkeys(notes))
    if prompts:
        out += "\n\nPrompts used:\n\n" + "\n".join(dict.fromkeys(prompts))
    return out


def models_table(results: Sequence[EvalResult]) -> str:
    """Every model side by side: one row per (dataset, task, setting), one column per model."""
    models = list(dict.fromkeys(r.model for r in results))
    if len(models) < 2:
        return ""
    rows: dict[tuple, dict[str, str]] = {}
    for r in results:
        if r.task == "zeroshot_retrieval":
            continue
        m = headline(r)
        lo, hi = r.ci.get(m, (math.nan, math.nan))
        key = (r.dataset, r.task, _setting(r), m)
        rows.setdefault(key, {})[r.model] = (
            f"{_pct(r.metrics.get(m, math.nan))} [{_pct(lo)}, {_pct(hi)}]"
        )
    lines = [
        "| dataset | task | setting | metric | " + " | ".join(models) + " |",
        "|---|---|---|---|" + "---:|" * len(models),
    ]
    for (ds, task, setting, m), cells in rows.items():
        lines.append(
            f"| {ds} | {task} | {setting} | {m} | "
            + " | ".join(cells.get(x, "") for x in models)
            + " |"
        )
    return "\n".join(lines)


def predictions_csv(r: EvalResult) -> str:
    """One row per test item: id, true label, predicted class, and the score of every class."""
    buf = io.StringIO()
    w = csv.writer(buf)
    names = r.settings.get("dataset_classes") or r.classes
    w.writerow(["id", "label", "prediction", *[f"score:{c}" for c in names]])
    for i, (yy, sc) in enumerate(zip(r.y, r.scores)):
        label = "|".join(str(int(v)) for v in yy) if np.ndim(yy) else int(yy)
        pred = "" if np.ndim(yy) else int(np.argmax(sc))
        w.writerow([r.ids[i] if r.ids else i, label, pred, *[f"{float(v):.6g}" for v in sc]])
    return buf.getvalue()


def task_table(results: Sequence[EvalResult], task: str) -> str:
    rs = [r for r in results if r.task == task]
    if not rs:
        return ""
    lines = [
        "| dataset | setting | metric | value [95% CI] | std over seeds |",
        "|---|---|---|---:|---:|",
    ]
    for r in rs:
        m = headline(r)
        lo, hi = r.ci.get(m, (math.nan, math.nan))
        std = r.metrics.get(f"{m}_std")
        lines.append(
            f"| {r.dataset} | {_setting(r)} | {m} | {_pct(r.metrics.get(m, math.nan))} "
            f"[{_pct(lo)}, {_pct(hi)}] | {'' if std is None else _pct(std)} |"
        )
    choices = []
    for r in rs:
        st = r.settings
        if "C" in st and "selection_metric" in st:
            choices.append(
                f"- {r.dataset} {_setting(r)}: C = {st['C']:.4g} chosen by {st['selection_metric']} "
                f"on {st.get('selection_split', 'val')} over 1e-6..1e6 "
                f"({len(st.get('C_grid', []))} grid points + {len(st.get('C_refined', []))} refined)"
            )
        elif "selection" in st and "C" in st:
            choices.append(
                f"- {r.dataset} {_setting(r)}: {st['selection']}; C per seed {st.get('C')}"
            )
        elif "selection" in st:
            choices.append(f"- {r.dataset} {_setting(r)}: {st['selection']}")
        for d in st.get("deviations", []):
            choices.append(f"- {r.dataset} {_setting(r)}: deviation from the published "
                           f"protocol: {d}")  # fmt: skip
    if choices:
        lines += ["", *choices]
    return "\n".join(lines)


def markdown(results: Sequence[EvalResult], skipped: dict[str, str] | None = None,
             plots: Sequence[Path] = (), out_dir: Path | None = None) -> str:  # fmt: skip
    parts = ["# BiomedCLIP evaluation report", ""]
    models = sorted({r.model for r in results})
    if models:
        parts += [
            f"Model: {', '.join(models)}. Numbers in %; intervals: seeded bootstrap over test items.",
            "",
        ]
    table = models_table(results)
    if table:
        parts += ["## All models side by side (headline metric, %, 95% CI)", "", table, ""]
    table = paper_table(results)
    if table:
        parts += ["## Zero-shot classification (paper protocol)", "", table, ""]
    for task, title in (("linear_probe", "Linear probe"), ("few_shot", "Few-shot (linear probe)"),
                        ("coop", "Few-shot (learned prompts, CoOp)")):  # fmt: skip
        t = task_table(results, task)
        if t:
            parts += [f"## {title}", "", t, ""]
    notes = {n for r in results for n in r.settings.get("dataset_notes", [])}
    if notes:
        parts += ["## Splits", ""] + [f"- {n}" for n in sorted(notes)] + [""]
    failed = [(r.dataset, f) for r in results for f in r.failures]
    if failed:
        parts += ["## Unreadable images (left out, counted)", ""]
        parts += [f"- {d}: {f['id']}: {f['error']}" for d, f in failed[:50]]
        parts.append("")
    if skipped:
        parts += ["## Datasets not evaluated", ""]
        parts += [f"- {name}: {why}" for name, why in skipped.items()]
        parts.append("")
    if plots:
        parts += ["## Plots", ""]
        for p in plots:
            rel = p.relative_to(out_dir) if out_dir and p.is_relative_to(out_dir) else p
            parts.append(f"![{p.stem}]({rel})")
        parts.append("")
    return "\n".join(parts)


def write_report(
    results: Sequence[EvalResult],
    out_dir: str | Path,
    skipped: dict[str, str] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, ``report.md`` and the plots into ``out_dir``."""
    from biomedclip.eval.plots import few_shot_plot, plot_result

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    if plots:
        for r in results:
            if r.task in ("zeroshot_classification", "linear_probe"):
                stem = f"{r.dataset}-{r.task}" + (
                    f"-{_setting(r).rstrip('%')}pct" if _setting(r) else ""
                )
                pngs += plot_result(r, out / "plots", stem)
        for ds in sorted({r.dataset for r in results}):
            fs = [r for r in results if r.dataset == ds and r.task in ("few_shot", "coop")]
            if fs:
                ref = {
                    f"{r.task.split('_')[0]} {_setting(r)}".strip(): r.metrics["acc1"]
                    for r in results
                    if r.dataset == ds and r.task in ("zeroshot_classification", "linear_probe")
                    and "acc1" in r.metrics and _setting(r) in ("", "100%")
                }  # fmt: skip
                pngs.append(few_shot_plot(fs, out / "plots" / f"{ds}-few-shot.png", reference=ref))
    for r in results:
        if r.task in ("zeroshot_classification", "linear_probe") and r.y is not None:
            (out / "predictions").mkdir(exist_ok=True)
            stem = f"{r.dataset}-{r.task}" + (
                f"-{_setting(r).rstrip('%')}pct" if _setting(r) else ""
            )
            if len({x.model for x in results}) > 1:
                stem += "-" + "".join(ch if ch.isalnum() else "_" for ch in r.model)[-40:]
            atomic_write_text(out / "predictions" / f"{stem}.csv", predictions_csv(r))
    atomic_write_json(out / "results.json", [r.to_record() for r in results])
    atomic_write_text(out / "results.csv", csv_text(results))
    atomic_write_text(out / "report.md", markdown(results, skipped, pngs, out))
    return {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "report.md"}
