"""Evaluation: the paper's protocols (zero-shot, linear probe, few-shot, CoOp, retrieval), dataset
adapters, metrics with bootstrap intervals, a feature cache, and reports.

Python API (the same as ``biomedclip eval ...``)::

    from biomedclip.embedding import Encoder
    from biomedclip.eval import EvalContext, run_zeroshot, run_linear_probe, run_few_shot, reproduce
    ctx = EvalContext(Encoder(model), data_root="data/")
    result = run_zeroshot(ctx, "lc25000_lung")          # EvalResult: metrics, ci, details
    probes = run_linear_probe(ctx, "lc25000_lung")       # 1 %, 10 %, 100 %
    results, skipped, paths = reproduce(ctx, "report/", tasks=("zeroshot", "linear-probe"))

Names are imported on first use, so ``biomedclip.eval.retrieval`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalContext": "runner",
    "run_zeroshot": "runner",
    "run_linear_probe": "runner",
    "run_few_shot": "runner",
    "run_coop": "runner",
    "reproduce": "runner",
    "EvalResult": "results",
    "Features": "features",
    "compute_features": "features",
    "load_dataset": "datasets",
    "LabelledSet": "datasets",
    "evaluate_zeroshot": "zeroshot_eval",
    "linear_probe": "probe",
    "few_shot": "fewshot",
    "coop_few_shot": "coop",
    "evaluate_retrieval": "retrieval_eval",
    "write_report": "report",
    "PAPER_DATASETS": "protocol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
