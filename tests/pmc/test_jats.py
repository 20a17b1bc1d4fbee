"""Extract stage: the 8 real PMC articles (17 figures) against expectations read from the XML,
and the JATS corner cases (fig-group, inline-graphic, supplementary material, bad XML)."""

from __future__ import annotations

import pytest

from biomedclip.pmc.jats import ExtractError, caption_text, parse_article

# file -> (pmcid, pmid, doi, journal, year, [(fig_id, label, graphic, caption start, caption end)])
EXPECTED = {
    "1471-2180-11-174.nxml": (
        "PMC3166277",
        "21810267",
        "10.1186/1471-2180-11-174",
        "BMC Microbiology",
        2011,
        [
            (
                "F1",
                "Figure 1",
                "1471-2180-11-174-1",
                "Schematic presentation of two models of holin hole formation. Holin monomers (shaded circles)",
                "adapted from Wang et al. [28] and White et al. [40].",
            ),
            (
                "F2",
                "Figure 2",
                "1471-2180-11-174-2",
                "Samples of a lysis recording and frequency distributions of various experimental treatments. (A)",
                "The bin size was 2 min. Additional data are shown in Tables 1 and 2.",
            ),
            (
                "F3",
                "Figure 3",
                "1471-2180-11-174-3",
                "Factors influencing λ lysis time stochasticity. (A) Effect of allelic variation",
                "open circles, MLT; close circles, SD; closed triangles, CV.",
            ),
            (
                "F4",
                "Figure 4",
                "1471-2180-11-174-4",
                "Effects of tKCN (timing of KCN addition). (A) On time delay tL - tKCN.",
                "(y = 13.24 - 0.28x + 0.01(x - 36.57)2).",
            ),
        ],
    ),
    "1472-6831-8-11.nxml": (
        "PMC2329613",
        "18405359",
        "10.1186/1472-6831-8-11",
        "BMC Oral Health",
        2008,
        [],
    ),
    "6605965a.nxml": (
        "PMC2994229",
        "21045829",
        "10.1038/sj.bjc.6605965",
        "British Journal of Cancer",
        2010,
        [],
    ),
    "ehp-116-1694.nxml": (
        "PMC2599765",
        "19079722",
        "10.1289/ehp.11570",
        "Environmental Health Perspectives",
        2008,
        [
            (
                "f1-ehp-116-1694",
                "Figure 1",
                "ehp-116-1694f1",
                "Exposure to PBDE-47 depressed circulating concentrations of total T4 in males and females (A)",
                "no effect on total T3 in males (B). *p < 0.05 compared with control.",
            ),
            (
                "f2-ehp-116-1694",
                "Figure 2",
                "ehp-116-1694f2",
                "Dietary exposure to PBDE-47 altered relative transcripts levels for TSHβ (A) and GPHα (B)",
                "relative to template RNA levels. *p < 0.05 compared with control.",
            ),
            (
                "f3-ehp-116-1694",
                "Figure 3",
                "ehp-116-1694f3",
                "Dietary PBDE-47 exposure elevated mRNA levels for TRα in females (A)",
                "normalized to 18S. *p < 0.05 compared to control.",
            ),
        ],
    ),
    "mds526.nxml": (
        "PMC3574550",
        "23149571",
        "10.1093/annonc/mds526",
        "Annals of Oncology",
        2012,
        [
            (
                "MDS526F1",
                "Figure 1.",
                "mds52601",
                "Deprivation inequalities in advanced stage at diagnosis by cancer",
                "for diagnosis in stage III/ IV versus I/II).",
            ),
            (
                "MDS526F2",
                "Figure 2.",
                "mds52602",
                "Age inequalities in advanced stage diagnosis in patients ≥65 by cancer",
                "for diagnosis in stage III/ IV versus I/II).",
            ),
        ],
    ),
    "pntd.0002065.nxml": (
        "PMC3585041",
        "23469300",
        "10.1371/journal.pntd.0002065",
        "PLoS Neglected Tropical Diseases",
        2013,
        [
            (
                "pntd-0002065-g001",
                "Figure 1",
                "pntd.0002065.g001",
                "Location of the study areas. Figure 1 shows the map of the Zambézia Province, Mozambique",
                "Zambeze, Cuacua and Chire Rivers are highlighted in blue.",
            ),
        ],
    ),
    "pone.0000217.nxml": (
        "PMC1790863",
        "17299597",
        "10.1371/journal.pone.0000217",
        "PLoS ONE",
        2007,
        [
            (
                "pone-0000217-g001",
                "Figure 1",
                "pone.0000217.g001",
                "Fisher's geometric model in two-dimensional phenotypic space. Fitness varies along two",
                "new phenotypic combinations and fitness values (white point).",
            ),
            (
                "pone-0000217-g002",
                "Figure 2",
                "pone.0000217.g002",
                "Predicted equilibrium fitness as a function of phenotypic complexity (ne). Results are shown",
                "curves indicate the analytical results.",
            ),
            (
                "pone-0000217-g003",
                "Figure 3",
                "pone.0000217.g003",
                "Equilibrium drift load as a function of population size for vesicular stomatitis virus and ΦX174.",
                "the lighter dashed line indicates the value for ΦX174.",
            ),
        ],
    ),
    "pone.0046493.nxml": (
        "PMC3460867",
        "23029536",
        "10.1371/journal.pone.0046493",
        "PLoS ONE",
        2012,
        [
            (
                "pone-0046493-g001",
                "Figure 1",
                "pone.0046493.g001",
                "Chemical structure of inhibitors. Chemical structures of A, THL and B, MmPPOX.",
                "(http://www.sisweb.com/referenc/tools/exactmass.htm).",
            ),
            (
                "pone-0046493-g002",
                "Figure 2",
                "pone.0046493.g002",
                "Inhibition of Lip-HSL proteins by MmPPOX. A, SDS-PAGE profile of the 9 Lip-HSL proteins",
                "leading to 50% enzymes residual activities.",
            ),
            (
                "pone-0046493-g003",
                "Figure 3",
                "pone.0046493.g003",
                "Protein-inhibitor adducts studies using mass spectrometry. Global mass modifications of A, LipH;",
                "identical vertical scales were chosen for the right parts.",
            ),
            (
                "pone-0046493-g004",
                "Figure 4",
                "pone.0046493.g004",
                "Antimycobacterial activity of MmPPOX and THL. Susceptibilities of M. tuberculosis",
                "between 10–20 µg/mL for MmPPOX, respectively.",
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_article(nxml_dir, name):
    pmcid, pmid, doi, journal, year, figs = EXPECTED[name]
    ex = parse_article((nxml_dir / name).read_bytes(), name)
    assert (ex.meta.pmcid, ex.meta.pmid, ex.meta.doi, ex.meta.journal, ex.meta.year) == (
        pmcid,
        pmid,
        doi,
        journal,
        year,
    )
    assert ex.meta.article_type == "research-article"
    assert [(f.fig_id, f.label, f.graphic) for f in ex.figures] == [f[:3] for f in figs]
    for fig, (_, _, _, start, end) in zip(ex.figures, figs):
        assert fig.caption.startswith(start), fig.caption[:120]
        assert fig.caption.endswith(end), fig.caption[-120:]
        assert "  " not in fig.caption and "\n" not in fig.caption
        assert "<" not in fig.caption.replace("< 0.05", "")  # markup flattened
    assert [f.index for f in ex.figures] == list(range(len(figs)))


def test_real_corpus_has_17_figures(nxml_dir):
    total = sum(len(parse_article(p.read_bytes()).figures) for p in sorted(nxml_dir.glob("*.nxml")))
    assert total == 17 == sum(len(v[5]) for v in EXPECTED.values())


def test_tables_and_formula_graphics_are_not_figures(nxml_dir):
    # pone.0000217 has 24 display-formula graphics and pntd 5 table graphics: none become figures
    ex = parse_article((nxml_dir / "pone.0000217.nxml").read_bytes())
    assert all(".e0" not in f.graphic for f in ex.figures)
    ex = parse_article((nxml_dir / "pntd.0002065.nxml").read_bytes())
    assert [f.graphic for f in ex.figures] == ["pntd.0002065.g001"]


def test_licenses_from_xml(nxml_dir):
    ex = parse_article((nxml_dir / "mds526.nxml").read_bytes())
    assert ex.meta.license == "http://creativecommons.org/licenses/by-nc/3.0"


JATS = b"""<?xml version="1.0"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.0 20120330//EN" "JATS-archivearticle1.dtd">
<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML" article-type="case-report">
<front><journal-meta><journal-title-group><journal-title>Test J</journal-title></journal-title-group></journal-meta>
<article-meta><article-id pub-id-type="pmc">123</article-id>
<pub-date pub-type="ppub"><year>2019</year></pub-date><pub-date pub-type="epub"><year>2018</year></pub-date>
</article-meta></front>
<body>
<fig-group id="G1"><caption><p>Group caption for both panels.</p></caption>
  <fig id="G1a"><label>Figure 1a</label><caption><title>Panel a</title><p>Left
     <italic>lung</italic>   with <inline-graphic xlink:href="icon"/>an arrow<sup>2</sup>.</p></caption>
     <graphic xlink:href="g1a"/></fig>
  <fig id="G1b"><label>Figure 1b</label><graphic xlink:href="g1b"/></fig>
</fig-group>
<fig id="F2"><label>Figure 2</label><caption><p>Formula <inline-formula><alternatives><tex-math>x^2</tex-math><mml:math><mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math></alternatives></inline-formula> shown.</p></caption>
  <alternatives><graphic xlink:href="f2.tif"/><graphic xlink:href="f2.jpg"/></alternatives></fig>
<supplementary-material id="S1"><fig id="SF1"><caption><p>Supplement</p></caption><graphic xlink:href="s1"/></fig></supplementary-material>
<table-wrap id="T1"><graphic xlink:href="t1"/></table-wrap>
</body></article>"""


def test_jats_corner_cases():
    ex = parse_article(JATS)
    assert (
        ex.meta.pmcid == "PMC123" and ex.meta.year == 2018 and ex.meta.article_type == "case-report"
    )
    assert [(f.fig_id, f.graphic, f.group_id) for f in ex.figures] == [
        ("G1a", "g1a", "G1"),
        ("G1b", "g1b", "G1"),
        ("F2", "f2.tif", ""),
    ]
    a, b, f2 = ex.figures
    assert a.caption == "Panel a. Left lung with an arrow2."  # title punctuated, markup flattened
    assert b.caption == "Group caption for both panels."  # fig-group caption inherited
    assert f2.caption == "Formula x2 shown."  # TeX twin dropped, MathML flattened


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty_xml"),
        (b"<article><body><fig></body>", "malformed_xml"),
        (b"<html/>", "not_jats"),
    ],
)
def test_bad_xml_raises_with_reason(data, reason):
    with pytest.raises(ExtractError) as e:
        parse_article(data, "x.nxml")
    assert e.value.reason == reason


def test_entities_are_not_resolved():
    xml = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><article><body><fig id="f"><caption><p>&x;</p></caption></fig></body></article>'
    ex = parse_article(xml)
    assert "root:" not in ex.figures[0].caption


def test_caption_none_is_empty():
    assert caption_text(None) == ""
