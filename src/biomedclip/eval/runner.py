"""The evaluation protocols end to end, from a dataset name to :class:`EvalResult` s.

Each ``run_*`` loads the splits it needs through the adapters, gets their features from the
cache (:func:`~.features.compute_features`, one encoding through the engine per split, then
reused) and runs one protocol. ``reproduce`` runs every paper dataset present under a data root
and writes the whole report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.eval.bootstrap import DEFAULT_RESAMPLES
from biomedclip.eval.datasets import LabelledSet, load_dataset
from biomedclip.eval.features import Features, compute_features
from biomedclip.eval.protocol import PAPER_DATASETS, default_classnames
from biomedclip.eval.results import EvalResult

log = logging.getLogger(__name__)
TASKS = ("zeroshot", "linear-probe", "few-shot", "coop")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "biomedclip" / "eval-features"


@dataclass
class EvalContext:
    """What every protocol shares: the encoder, where data and cached features live, the seed."""

    encoder: object
    data_root: Path | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    model_name: str = ""
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0  # seeds the hash splits, probe subsets, few-shot draws and the bootstrap
    group_by: str | None = None  # tables: the column whose values must not straddle splits
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None
    _features: dict = field(default_factory=dict, repr=False)

    def dataset(self, name: str, split: str) -> LabelledSet:
        if (name in PAPER_DATASETS or not Path(name).exists()) and self.data_root is None:
            raise InputError(f"{name}: pass --data-root (the folder holding the dataset)")
        return load_dataset(
            name, self.data_root or ".", split, seed=self.seed, group_by=self.group_by
        )

    def features(self, name: str, split: str) -> Features:
        key = (name, split)
        if key not in self._features:
            ds = self.dataset(name, split)
            tick = self.progress(f"{ds.name}/{split}", len(ds)) if self.progress else None
            self._features[key] = compute_features(self.encoder, ds, self.cache_dir, progress=tick)
        return self._features[key]


def classnames_for(ds: LabelledSet, classnames: Sequence[str] | None = None) -> list[str]:
    """``classnames`` if given, else the paper's (Supp. Table 10, mapped to the adapter's class
    order) for a paper dataset, else the class names made readable."""
    if classnames is not None:
        if len(classnames) != len(ds.classes):
            raise InputError(
                f"{len(classnames)} class names for {len(ds.classes)} classes of {ds.name}"
            )
        return list(classnames)
    spec = PAPER_DATASETS.get(ds.name)
    return spec.prompt_names(ds.classes) if spec else default_classnames(ds.classes)


def templates_for(ds: LabelledSet, templates=None):
    if templates is not None:
        return templates
    spec = PAPER_DATASETS.get(ds.name)
    return spec.templates if spec else "paper"


def prompt_source(ds: LabelledSet, classnames=None, templates=None) -> str:
    spec = PAPER_DATASETS.get(ds.name)
    parts = []
    if spec:
        parts.append("Supp. Table 10 class names" if classnames is None else "custom class names")
        parts.append("Supp. Table 10 templates" if templates is None else "custom templates")
    else:
        parts.append("readable class names" if classnames is None else "custom class names")
        parts.append("paper template set" if templates is None else "custom templates")
    return "; ".join(parts)


def run_zeroshot(
    ctx: EvalContext, name: str, split: str = "test", classnames=None, templates=None
) -> EvalResult:
    from biomedclip.eval.zeroshot_eval import evaluate_zeroshot

    f = ctx.features(name, split)
    names = classnames_for(f.dataset, classnames)
    temps = templates_for(f.dataset, templates)
    return evaluate_zeroshot(
        ctx.encoder, f, names, temps, ctx.model_name, ctx.n_resamples, ctx.seed,
        prompt_source(f.dataset, classnames, templates),
    )  # fmt: skip


def run_linear_probe(
    ctx: EvalContext, name: str, fractions: Sequence[float] = (0.01, 0.1, 1.0)
) -> list[EvalResult]:
    from biomedclip.eval.probe import linear_probe

    tr, va, te = (ctx.features(name, s) for s in ("train", "val", "test"))
    return linear_probe(
        tr, va, te, fractions, ctx.seed, ctx.model_name, n_resamples=ctx.n_resamples
    )


def run_few_shot(
    ctx: EvalContext, name: str, shots=(1, 2, 4, 8, 16), seeds=(0, 1, 2)
) -> list[EvalResult]:
    from biomedclip.eval.fewshot import few_shot

    tr, te = ctx.features(name, "train"), ctx.features(name, "test")
    return few_shot(tr, te, shots, seeds, ctx.model_name, ctx.n_resamples)


def run_coop(
    ctx: EvalContext,
    name: str,
    shots=(1, 2, 4, 8, 16),
    seeds=(0, 1, 2),
    classnames=None,
    settings=None,
) -> list[EvalResult]:
    from biomedclip.eval.coop import CoOpSettings, coop_few_shot, prompt_tower

    enc = ctx.encoder
    settings = settings or CoOpSettings()
    # refuse before encoding anything
    prompt_tower(enc.model, enc.tokenizer, ctx.model_name, settings.n_ctx)
    tr, te = ctx.features(name, "train"), ctx.features(name, "test")
    va = ctx.features(name, "val") if settings.select == "best-val" else None
    names = classnames_for(te.dataset, classnames)
    return coop_few_shot(
        enc.model, enc.tokenizer, tr, te, names, shots, seeds, settings, ctx.model_name,
        ctx.n_resamples, val=va,
    )  # fmt: skip


def reproduce(
    ctx: EvalContext | Sequence[EvalContext],
    out_dir: str | Path,
    tasks: Sequence[str] = ("zeroshot",),
    datasets: Sequence[str] | None = None,
    shots=(1, 2, 4, 8, 16),
    seeds=(0, 1, 2),
) -> tuple[list[EvalResult], dict[str, str], dict[str, Path]]:
    """Every paper dataset present under the data root: the chosen ``tasks`` for each context
    (one per model, side by side in one report), then the report. Datasets that are absent are
    listed with the reason (the file the adapter expected)."""
    from biomedclip.eval.report import write_report

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise InputError(f"unknown task(s) {unknown}: use {', '.join(TASKS)}")
    contexts = [ctx] if isinstance(ctx, EvalContext) else list(ctx)
    results: list[EvalResult] = []
    skipped: dict[str, str] = {}
    for name in datasets or list(PAPER_DATASETS):
        try:
            contexts[0].dataset(name, "test")
        except InputError as e:
            skipped[name] = str(e)
            log.info("skipping %s: %s", name, e)
            continue
        for c in contexts:
            if "zeroshot" in tasks:
                results.append(run_zeroshot(c, name))
            if "linear-probe" in tasks:
                results += run_linear_probe(c, name)
            if "few-shot" in tasks:
                results += run_few_shot(c, name, shots, seeds)
            if "coop" in tasks:
                from biomedclip.eval.coop import CoOpSettings, prompt_tower

                try:
                    prompt_tower(c.encoder.model, c.encoder.tokenizer, c.model_name,
                                 CoOpSettings().n_ctx)  # fmt: skip
                except InputError as e:
                    skipped[f"{name} coop ({c.model_name})"] = str(e)
                    continue
                results += run_coop(c, name, shots, seeds)
    paths = write_report(results, out_dir, skipped)
    return results, skipped, paths
