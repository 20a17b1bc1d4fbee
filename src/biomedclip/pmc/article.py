"""The per-article unit of work: extract and/or pair one article, recording its state.

This is what the engines (local process pool, Ray) run in parallel. It never raises for a bad
article: broken packages and unusable XML are quarantined with a reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from biomedclip.io_utils import atomic_write_json
from biomedclip.pmc.config import PairConfig
from biomedclip.pmc.filelist import ArticleRef
from biomedclip.pmc.jats import Extracted, ExtractError, parse_article
from biomedclip.pmc.package import PackageError, read_package
from biomedclip.pmc.pair import pair_figures, write_paired
from biomedclip.pmc.state import EXTRACTED, PAIRED, QUARANTINED, WorkDir

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    article: str
    status: str  # paired | extracted | quarantined | cached | not_fetched | error
    pairs: int = 0
    drops: int = 0
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def package_path(ref: ArticleRef, work: WorkDir):
    from pathlib import Path

    return Path(ref.file) if ref.is_local else work.package(ref.pmcid)


def process_article(
    ref: ArticleRef, work: WorkDir, cfg: PairConfig, digest: str, pair: bool = True
) -> Outcome:
    """Extract (and, with ``pair``, pair) one article unless its results already exist."""
    try:
        return _process(ref, work, cfg, digest, pair)
    except Exception as e:  # noqa: BLE001 - one article must never stop the job
        log.exception("article %s failed", ref.pmcid)
        work.write_quarantine(ref.pmcid, "pair" if pair else "extract", "internal_error", repr(e))
        return Outcome(ref.pmcid, QUARANTINED, reason="internal_error")


def _process(ref: ArticleRef, work: WorkDir, cfg: PairConfig, digest: str, pair: bool) -> Outcome:
    status = work.status(ref.pmcid, digest)
    if status == QUARANTINED:
        return Outcome(ref.pmcid, "cached", reason=work.read_quarantine(ref.pmcid)["reason"])
    if status == PAIRED or (status == EXTRACTED and not pair):
        return Outcome(ref.pmcid, "cached")
    path = package_path(ref, work)
    if not path.exists():
        return Outcome(ref.pmcid, "not_fetched", reason="package not downloaded")
    try:
        pkg = read_package(path)
    except PackageError as e:
        work.write_quarantine(ref.pmcid, "extract", e.reason, e.detail)
        return Outcome(ref.pmcid, QUARANTINED, reason=e.reason)
    ext_path = work.extracted(ref.pmcid)
    if status == EXTRACTED:
        extracted = Extracted.from_dict(json.loads(ext_path.read_text(encoding="utf-8")))
    else:
        try:
            extracted = parse_article(pkg.xml, f"{path}:{pkg.xml_name}")
        except ExtractError as e:
            work.write_quarantine(ref.pmcid, "extract", e.reason, e.detail)
            return Outcome(ref.pmcid, QUARANTINED, reason=e.reason)
        atomic_write_json(
            ext_path, {"article": ref.pmcid, "xml": pkg.xml_name, **extracted.to_dict()}
        )
    if not pair:
        return Outcome(ref.pmcid, EXTRACTED)
    result = pair_figures(ref, pkg, extracted, cfg)
    write_paired(work, ref, extracted, result, digest)
    return Outcome(ref.pmcid, PAIRED, len(result["pairs"]), len(result["drops"]))
