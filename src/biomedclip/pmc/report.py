"""Stage ``report``: counts at every stage with the reason for every drop, caption lengths in
tokens, image sizes; written as ``report/report.json``, ``report/quarantine.jsonl`` and PNG plots.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from biomedclip.io_utils import atomic_open, atomic_write_json
from biomedclip.pmc.config import SPLITS
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.split import read_plan
from biomedclip.pmc.state import PAIRED, QUARANTINED, WorkDir, read_paired_meta

TOKEN_BINS = [0, 16, 32, 48, 64, 77, 96, 128, 192, 256, 384, 512, 768, 1024, 10**9]
SIDE_BINS = [0, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 4096, 10**9]


def histogram(values: list[int], bins: list[int]) -> list[dict]:
    counts, _ = np.histogram(np.asarray(values, dtype=np.int64), bins=bins)
    return [
        {"from": lo, "to": (hi if hi < 10**9 else None), "count": int(c)}
        for lo, hi, c in zip(bins[:-1], bins[1:], counts)
    ]


def _token_stats(values: list[int]) -> dict:
    arr = np.asarray(values or [0])
    return {
        "n": len(values),
        "over_77": int(sum(v > 77 for v in values)),
        "over_256": int(sum(v > 256 for v in values)),
        "mean": float(arr.mean()) if values else 0.0,
        "median": float(np.median(arr)) if values else 0.0,
        "p95": float(np.percentile(arr, 95)) if values else 0.0,
        "max": int(arr.max()) if values else 0,
        "histogram": histogram(values, TOKEN_BINS),
    }


def _size_stats(sides: list[tuple[int, int]]) -> dict:
    longest = [max(s) for s in sides]
    shortest = [min(s) for s in sides]
    pct = lambda v, q: float(np.percentile(v, q)) if v else 0.0  # noqa: E731
    return {
        "n": len(sides),
        "longest_side": {
            "p5": pct(longest, 5),
            "median": pct(longest, 50),
            "p95": pct(longest, 95),
            "histogram": histogram(longest, SIDE_BINS),
        },
        "shortest_side": {
            "p5": pct(shortest, 5),
            "median": pct(shortest, 50),
            "p95": pct(shortest, 95),
            "histogram": histogram(shortest, SIDE_BINS),
        },
    }


def build_report(work: WorkDir, refs: list[ArticleRef], timings: dict | None = None) -> dict:
    """Gather the stage counts from the work directory; writes JSON, quarantine list and plots."""
    list_counts = json.loads(work.list_summary.read_text()) if work.list_summary.is_file() else {}
    fetch = Counter()
    extract = Counter()
    quarantine_reasons: Counter[str] = Counter()
    pair_drops: Counter[str] = Counter()
    figures = pairs = articles_no_figs = 0
    all_tokens: list[int] = []
    quarantine_lines: list[dict] = []
    written_keys: dict[str, set[str]] = {}
    plan_counts = {"articles": Counter(), "pairs": Counter(), "duplicates": Counter()}
    if work.plan_file.is_file():
        for line in read_plan(work.plan_file):
            written_keys[line["article"]] = set(line["keep"])
            plan_counts["articles"][line["split"]] += 1
            plan_counts["pairs"][line["split"]] += len(line["keep"])
            for d in line["duplicates"]:
                plan_counts["duplicates"][d["reason"]] += 1
    written_tokens: list[int] = []
    written_sizes: list[tuple[int, int]] = []
    for ref in refs:
        status = work.status(ref.pmcid)
        if ref.is_local:
            fetch["local"] += 1
        elif work.package(ref.pmcid).is_file():
            fetch["downloaded"] += 1
        elif work.fetch_failed(ref.pmcid).is_file():
            fetch["failed"] += 1
            fail = json.loads(work.fetch_failed(ref.pmcid).read_text())
            quarantine_lines.append(
                {
                    "article": ref.pmcid,
                    "stage": "fetch",
                    "reason": "fetch_failed",
                    "detail": fail.get("reason", ""),
                }
            )
        else:
            fetch["pending"] += 1
        if status == QUARANTINED:
            q = work.read_quarantine(ref.pmcid) or {}
            quarantine_reasons[q.get("reason", "unknown")] += 1
            quarantine_lines.append(q)
            continue
        if status != PAIRED:
            extract["not_processed"] += 1
            continue
        extract["parsed"] += 1
        meta = read_paired_meta(work.paired(ref.pmcid))
        figures += meta["figures"]
        articles_no_figs += meta["figures"] == 0
        pairs += len(meta["pairs"])
        keep = written_keys.get(ref.pmcid, set())
        for p in meta["pairs"]:
            all_tokens.append(p["caption_tokens"])
            if p["key"] in keep:
                written_tokens.append(p["caption_tokens"])
                written_sizes.append((p["orig_width"], p["orig_height"]))
        for d in meta["drops"]:
            pair_drops[d["reason"]] += 1
            if d["reason"] != "empty_caption":
                all_tokens.append(d["caption_tokens"])
            quarantine_lines.append(
                {
                    "article": ref.pmcid,
                    "stage": "pair",
                    **{k: d[k] for k in ("key", "fig_id", "reason", "detail")},
                }
            )
    manifest_path = work.shards_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    report = {
        "list": list_counts,
        "fetch": {"articles": len(refs), **dict(sorted(fetch.items()))},
        "extract": {
            **dict(sorted(extract.items())),
            "quarantined": sum(quarantine_reasons.values()),
            "quarantine_reasons": dict(sorted(quarantine_reasons.items())),
            "figures": figures,
            "articles_without_figures": articles_no_figs,
        },
        "pair": {
            "figures": figures,
            "pairs": pairs,
            "dropped": sum(pair_drops.values()),
            "drop_reasons": dict(sorted(pair_drops.items())),
        },
        "dedup": {
            "pairs_in": pairs,
            "duplicates": sum(plan_counts["duplicates"].values()),
            "reasons": dict(sorted(plan_counts["duplicates"].items())),
        },
        "split": {
            "articles": {s: plan_counts["articles"][s] for s in SPLITS},
            "pairs": {s: plan_counts["pairs"][s] for s in SPLITS},
        },
        "write": (
            {
                "shards": len(manifest["shards"]),
                "splits": manifest["splits"],
                "samples": sum(s["samples"] for s in manifest["splits"].values()),
                "bytes": sum(s["bytes"] for s in manifest["splits"].values()),
            }
            if manifest
            else None
        ),
        "caption_tokens": {
            "all_pairs": _token_stats(all_tokens),
            "written": _token_stats(written_tokens),
        },
        "image_sizes": _size_stats(written_sizes),
    }
    if timings:
        report["timings_s"] = timings
    out = work.report_dir
    atomic_write_json(out / "report.json", report)
    with atomic_open(out / "quarantine.jsonl", "w") as f:
        for line in quarantine_lines:
            f.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
    plot(report, written_tokens, written_sizes, out)
    return report


def plot(report: dict, tokens: list[int], sizes: list[tuple[int, int]], out: Path) -> None:
    """Caption-length histogram and image-size scatter as PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(tokens or [0], bins=60, color="#4472c4")
    for limit, color in ((77, "orange"), (256, "red")):
        ax.axvline(limit, color=color, linestyle="--", label=f"{limit} tokens")
    st = report["caption_tokens"]["written"]
    ax.set_title(
        f"Caption length (tokens), n={st['n']}: >77: {st['over_77']}, >256: {st['over_256']}"
    )
    ax.set_xlabel("tokens incl. [CLS]/[SEP]")
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    _save(fig, out / "caption_tokens.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    if sizes:
        w, h = zip(*sizes)
        ax.scatter(w, h, s=4, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("source width (px)")
    ax.set_ylabel("source height (px)")
    ax.set_title(f"Source image sizes, n={len(sizes)}")
    fig.tight_layout()
    _save(fig, out / "image_sizes.png")
    plt.close(fig)


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
