"""Stage ``list``: read the PMC OA file list (CSV or TXT layout) and select articles.

CSV (``oa_file_list.csv``): ``File, Article Citation, Accession ID, Last Updated (YYYY-MM-DD
HH:MM:SS), PMID, License``. TXT (``oa_file_list.txt``): a first line with the list's date, then
tab-separated ``File, citation, Accession ID, PMID, License``. Optional extra columns ``MD5``/``Size``
are used by fetch to check downloads. Local article folders or packages can stand in for the list.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path

from biomedclip.errors import InputError
from biomedclip.pmc.config import ListConfig

CITATION_RE = re.compile(r"^(?P<journal>.+?)\.\s*(?P<year>(?:1[6-9]|20)\d{2})\b")
PMCID_RE = re.compile(r"PMC\d+")


@dataclass(frozen=True)
class ArticleRef:
    """One article of the file list: where its package is and what the list says about it."""

    pmcid: str
    file: str  # package path relative to the mirror, or a local path (tar.gz or folder)
    citation: str = ""
    journal: str = ""
    year: int | None = None
    last_updated: str = ""
    pmid: str = ""
    license: str = ""
    md5: str = ""
    size: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> ArticleRef:
        return cls(**{k: d.get(k, v.default) for k, v in cls.__dataclass_fields__.items()})

    @property
    def is_local(self) -> bool:
        """Local articles carry an absolute path; list rows a path relative to the mirror."""
        return Path(self.file).is_absolute()


@dataclass
class ListResult:
    selected: list[ArticleRef]
    counts: dict  # rows, selected, dropped: {reason: n}


def parse_citation(citation: str) -> tuple[str, int | None]:
    """``"PLoS One. 2012; 7(9):e46493"`` -> ``("PLoS One", 2012)``."""
    m = CITATION_RE.match(citation.strip())
    if not m:
        return "", None
    return m.group("journal").strip(), int(m.group("year"))


def _norm_header(h: str) -> str:
    h = h.strip().lower()
    for key, name in (
        ("file", "file"),
        ("article citation", "citation"),
        ("citation", "citation"),
        ("accession", "pmcid"),
        ("last updated", "last_updated"),
        ("pmid", "pmid"),
        ("license", "license"),
        ("md5", "md5"),
        ("size", "size"),
    ):
        if h.startswith(key):
            return name
    return h


def _row_to_ref(row: dict[str, str], source: str, line: int) -> ArticleRef:
    file = (row.get("file") or "").strip()
    pmcid = (row.get("pmcid") or "").strip()
    if not pmcid:
        m = PMCID_RE.search(file)
        pmcid = m.group(0) if m else ""
    if not file or not PMCID_RE.fullmatch(pmcid):
        raise InputError(f"{source}:{line}: row has no package file or no PMCID ({row})")
    citation = (row.get("citation") or "").strip()
    journal, year = parse_citation(citation)
    pmid = (row.get("pmid") or "").strip()
    pmid = pmid.removeprefix("PMID:").strip()
    size = (row.get("size") or "").strip()
    return ArticleRef(
        pmcid=pmcid,
        file=file,
        citation=citation,
        journal=journal,
        year=year,
        last_updated=(row.get("last_updated") or "").strip(),
        pmid=pmid if pmid.isdigit() else "",
        license=(row.get("license") or "").strip(),
        md5=(row.get("md5") or "").strip().lower(),
        size=int(size) if size.isdigit() else None,
    )


def parse_file_list(text: str | Iterable[str], source: str = "<file list>") -> Iterator[ArticleRef]:
    """Rows of a file list in the CSV or TXT layout (detected from the first line).

    ``text`` is the whole list or an iterable of lines (an open file: streamed, not loaded).
    """
    lines = iter(io.StringIO(text) if isinstance(text, str) else text)
    first = next(lines, "").rstrip("\r\n")
    if not first.strip():
        raise InputError(f"{source}: the file list is empty")
    if "\t" not in first and "," in first and first.lower().startswith("file"):
        header = [_norm_header(h) for h in next(csv.reader([first]))]
        for i, values in enumerate(csv.reader(lines), start=2):
            if values:
                yield _row_to_ref(dict(zip(header, values)), source, i)
        return
    # TXT: optional date line, then tab-separated rows without a header
    names = ["file", "citation", "pmcid", "pmid", "license"]
    pending: list[str] = []
    if first.lower().startswith("file\t"):
        names = [_norm_header(h) for h in first.split("\t")]
    elif "\t" in first:
        pending = [first]
    start = 2 if not pending else 1
    for i, line in enumerate(itertools.chain(pending, lines), start=start):
        line = line.rstrip("\r\n")
        if line.strip():
            yield _row_to_ref(dict(zip(names, line.split("\t"))), source, i)


def read_file_list(path: Path, source: str | None = None) -> Iterator[ArticleRef]:
    """Stream the rows of a file list on disk."""
    with Path(path).open(encoding="utf-8", errors="replace", newline="") as f:
        yield from parse_file_list(f, source or str(path))


def local_refs(root: Path) -> Iterator[ArticleRef]:
    """Articles from a local folder: ``PMC*.tar.gz`` packages and/or folders holding an ``.nxml``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    for p in sorted(root.iterdir()):
        if p.name.endswith(".tar.gz") or (p.is_dir() and any(p.glob("*.nxml"))):
            m = PMCID_RE.search(p.name)
            pmcid = (
                m.group(0)
                if m
                else "PMC" + str(int(hashlib.sha1(p.name.encode()).hexdigest()[:12], 16))
            )
            yield ArticleRef(pmcid=pmcid, file=str(p.resolve()))


def _sample_key(pmcid: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{pmcid}".encode()).hexdigest()


def _parse_updated(value: str) -> date | None:
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").date()
    except ValueError:
        return None


def select(refs: Iterable[ArticleRef], cfg: ListConfig) -> ListResult:
    """Apply the filters; a deterministic sample (by hash of PMCID and seed) comes last."""
    dropped: Counter[str] = Counter()
    licenses = {x.strip().lower() for x in cfg.licenses}
    journals = {x.strip().lower() for x in cfg.journals}
    seen: set[str] = set()
    kept: list[ArticleRef] = []
    rows = 0
    for ref in refs:
        rows += 1
        if ref.pmcid in seen:
            dropped["duplicate_row"] += 1
            continue
        seen.add(ref.pmcid)
        if licenses and ref.license.lower() not in licenses:
            dropped["license"] += 1
            continue
        if journals and ref.journal.lower() not in journals:
            dropped["journal"] += 1
            continue
        if cfg.year_from or cfg.year_to:
            if ref.year is None:
                dropped["no_year"] += 1
                continue
            if (cfg.year_from and ref.year < cfg.year_from) or (
                cfg.year_to and ref.year > cfg.year_to
            ):
                dropped["year_range"] += 1
                continue
        if cfg.updated_from or cfg.updated_to:
            updated = _parse_updated(ref.last_updated)
            if updated is None:
                dropped["no_update_date"] += 1
                continue
            if (cfg.updated_from and updated < cfg.updated_from) or (
                cfg.updated_to and updated > cfg.updated_to
            ):
                dropped["date_range"] += 1
                continue
        kept.append(ref)
    if cfg.sample is not None and cfg.sample < len(kept):
        chosen = sorted(kept, key=lambda r: _sample_key(r.pmcid, cfg.seed))[: cfg.sample]
        dropped["not_sampled"] += len(kept) - len(chosen)
        kept = chosen
    kept.sort(key=lambda r: (len(r.pmcid), r.pmcid))
    counts = {"rows": rows, "selected": len(kept), "dropped": dict(sorted(dropped.items()))}
    return ListResult(kept, counts)


def read_selected(path: Path) -> list[ArticleRef]:
    """The ``articles.jsonl`` written by the list stage."""
    if not path.is_file():
        raise InputError(f"{path}: no article list (run `biomedclip pmc list` first)")
    with path.open(encoding="utf-8") as f:
        return [ArticleRef.from_dict(json.loads(line)) for line in f if line.strip()]
