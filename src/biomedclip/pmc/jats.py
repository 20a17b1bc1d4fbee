"""Stage ``extract``: figures and article metadata from a JATS ``.nxml`` file (lxml).

Every ``<fig>`` (children of ``<fig-group>`` included) gives one entry per graphic with its id,
label, caption (title + paragraphs, inline markup flattened, whitespace normalised) and graphic
href. ``<inline-graphic>``, formulas' TeX twins and anything inside ``<supplementary-material>`` are
skipped; tables are not figures. The parser never loads DTDs or the network.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from lxml import etree

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
SKIP_IN_TEXT = {
    "inline-graphic",
    "graphic",
    "media",
    "tex-math",
    "supplementary-material",
    "object-id",
}
DATE_PREFERENCE = ("epub", "ppub", "pub", "collection", "epub-ppub", "pmc-release")
_WS = re.compile(r"\s+")


class ExtractError(Exception):
    """The XML cannot be used; ``reason`` is a short code for the report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Figure:
    """One figure graphic with its caption."""

    index: int  # ordinal in the article (document order), the pair key's suffix
    fig_id: str
    label: str
    caption: str
    graphic: str  # href as written (often without extension)
    group_id: str = ""


@dataclass
class ArticleMeta:
    pmcid: str = ""
    pmid: str = ""
    doi: str = ""
    journal: str = ""
    year: int | None = None
    license: str = ""
    article_type: str = ""
    title: str = ""


@dataclass
class Extracted:
    meta: ArticleMeta
    figures: list[Figure] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"meta": asdict(self.meta), "figures": [asdict(f) for f in self.figures]}

    @classmethod
    def from_dict(cls, d: dict) -> Extracted:
        return cls(ArticleMeta(**d["meta"]), [Figure(**f) for f in d["figures"]])


def _local(el) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""  # comment or processing instruction
    return tag.rsplit("}", 1)[-1]


def normalize_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def flatten(el) -> str:
    """Text of ``el`` with inline markup flattened and skipped elements left out."""
    parts: list[str] = []

    def walk(node):
        name = _local(node)
        if name in SKIP_IN_TEXT:
            if node.tail:
                parts.append(node.tail)
            return
        if name and node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
        if node is not el and node.tail:
            parts.append(node.tail)

    walk(el)
    return normalize_ws("".join(parts))


def caption_text(caption) -> str:
    """Title and paragraphs of a ``<caption>``, joined into one normalised string."""
    if caption is None:
        return ""
    pieces: list[str] = []
    for child in caption:
        name = _local(child)
        if name in SKIP_IN_TEXT or not name:
            continue
        text = flatten(child)
        if not text:
            continue
        if name == "title" and text[-1] not in ".!?:;":
            text += "."
        pieces.append(text)
    if not pieces:  # caption with bare text
        return flatten(caption)
    return normalize_ws(" ".join(pieces))


def _first(root, path: str) -> str:
    found = root.find(path)
    return flatten(found) if found is not None else ""


def _year(article_meta) -> int | None:
    years: dict[str, int] = {}
    for pd in article_meta.iter("pub-date"):
        kind = pd.get("pub-type") or pd.get("date-type") or ""
        y = (pd.findtext("year") or "").strip()
        if y.isdigit():
            years.setdefault(kind, int(y))
    for kind in DATE_PREFERENCE:
        if kind in years:
            return years[kind]
    return min(years.values()) if years else None


def _license(article_meta) -> str:
    lic = article_meta.find(".//permissions/license")
    if lic is None:
        return ""
    href = lic.get(XLINK_HREF) or ""
    if not href:
        for child in lic.iter():
            if _local(child) == "license_ref" and child.text:
                href = child.text.strip()
                break
    return href or lic.get("license-type") or flatten(lic)[:200]


def parse_meta(root) -> ArticleMeta:
    am = root.find("front/article-meta")
    jm = root.find("front/journal-meta")
    meta = ArticleMeta(article_type=root.get("article-type") or "")
    if jm is not None:
        meta.journal = _first(jm, ".//journal-title") or _first(
            jm, "journal-id[@journal-id-type='nlm-ta']"
        )
    if am is None:
        return meta
    for aid in am.findall("article-id"):
        kind, value = aid.get("pub-id-type"), (aid.text or "").strip()
        if kind in ("pmc", "pmcid") and value:
            meta.pmcid = value if value.startswith("PMC") else "PMC" + value
        elif kind == "pmid":
            meta.pmid = value
        elif kind == "doi":
            meta.doi = value
    meta.title = _first(am, "title-group/article-title")
    meta.year = _year(am)
    meta.license = _license(am)
    return meta


def _in_supplement(el) -> bool:
    return any(_local(a) == "supplementary-material" for a in el.iterancestors())


def _graphics(fig) -> list[str]:
    """hrefs of the figure's own graphics (first of each ``<alternatives>``), not nested figs'."""
    hrefs: list[str] = []
    for child in fig:
        name = _local(child)
        if name == "graphic" and child.get(XLINK_HREF):
            hrefs.append(child.get(XLINK_HREF))
        elif name == "alternatives":
            alts = [
                g.get(XLINK_HREF) for g in child if _local(g) == "graphic" and g.get(XLINK_HREF)
            ]
            if alts:
                hrefs.append(alts[0])
    return hrefs


def parse_figures(root) -> list[Figure]:
    figures: list[Figure] = []
    for fig in root.iter("{*}fig"):
        if _in_supplement(fig):
            continue
        parent = fig.getparent()
        group = parent if parent is not None and _local(parent) == "fig-group" else None
        caption = caption_text(fig.find("{*}caption"))
        if not caption and group is not None:
            caption = caption_text(group.find("{*}caption"))
        label = _first(fig, "{*}label")
        fig_id = fig.get("id") or ""
        hrefs = _graphics(fig)
        for i, href in enumerate(hrefs or [""]):
            figures.append(
                Figure(
                    index=len(figures),
                    fig_id=fig_id if len(hrefs) <= 1 else f"{fig_id}-{i + 1}",
                    label=label,
                    caption=caption,
                    graphic=href,
                    group_id=(group.get("id") or "") if group is not None else "",
                )
            )
    return figures


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def parse_article(data: bytes, source: str = "<nxml>") -> Extracted:
    """Metadata and figures of one article; raises :class:`ExtractError` for unusable XML."""
    if not data.strip():
        raise ExtractError("empty_xml", f"{source}: file is empty")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as e:
        raise ExtractError("malformed_xml", f"{source}: {e}") from e
    if _local(root) != "article":
        raise ExtractError("not_jats", f"{source}: root element is <{_local(root)}>, not <article>")
    return Extracted(parse_meta(root), parse_figures(root))
