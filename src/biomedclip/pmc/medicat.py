"""MedICaT (Subramanian et al. 2020) as a pipeline source: figure-caption pairs from its JSONL.

The JSONL is read by :func:`biomedclip.pairs.iter_medicat` (``pdf_hash``, ``fig_uri``,
``s2_caption``, ``oa_info.doi``; figure file ``<figures>/<pdf_hash>_<fig_uri>``). :func:`import_medicat` turns
the papers into per-article pair results in a work directory (one "article" per ``pdf_hash``), so
``biomedclip pmc split``, ``write`` and ``report`` make shards of them like of PMC articles.
"""

from __future__ import annotations

from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.io_utils import atomic_open, atomic_write_json
from biomedclip.pairs import MedicatRecord, iter_medicat
from biomedclip.pmc.config import PairConfig, pair_digest
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.jats import ArticleMeta, Extracted, Figure
from biomedclip.pmc.package import Package
from biomedclip.pmc.pair import pair_figures, write_paired
from biomedclip.pmc.state import WorkDir


def import_medicat(jsonl: Path, figures: Path, work: WorkDir, cfg: PairConfig) -> dict:
    """Write the papers' pair results and an article list into ``work``; returns counts."""
    papers: dict[str, list[MedicatRecord]] = {}
    for p in iter_medicat(jsonl, figures):
        if not p.paper:
            raise InputError(f"{jsonl}:{p.line}: no pdf_hash (the paper a figure belongs to)")
        papers.setdefault(p.paper, []).append(p)
    digest = pair_digest(cfg)
    refs, n_pairs, n_drops = [], 0, 0
    for paper in sorted(papers):
        items = sorted(papers[paper], key=lambda p: p.image.name)
        ref = ArticleRef(pmcid=paper, file=str(Path(figures).resolve()))
        images = {p.image.name: p.image.read_bytes() for p in items if p.image.is_file()}
        figs = [
            Figure(
                index=i, fig_id=p.fig_key, label=p.fig_key, caption=p.caption, graphic=p.image.name
            )
            for i, p in enumerate(items)
        ]
        extracted = Extracted(ArticleMeta(pmcid="", doi=items[0].doi, article_type="medicat"), figs)
        result = pair_figures(ref, Package(str(figures), "", b"", images), extracted, cfg)
        write_paired(work, ref, extracted, result, digest)
        refs.append(ref)
        n_pairs += len(result["pairs"])
        n_drops += len(result["drops"])
    with atomic_open(work.list_file, "w") as f:
        for ref in refs:
            f.write(ref.to_json() + "\n")
    counts = {
        "source": str(jsonl),
        "rows": sum(map(len, papers.values())),
        "selected": len(refs),
        "dropped": {},
    }
    atomic_write_json(work.list_summary, counts)
    return {"papers": len(refs), "pairs": n_pairs, "dropped": n_drops}
