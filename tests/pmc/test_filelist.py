"""List stage: both published layouts of the OA file list, and the filters."""

from __future__ import annotations

from datetime import date

import pytest

from biomedclip.errors import InputError
from biomedclip.pmc.config import ListConfig
from biomedclip.pmc.filelist import parse_citation, parse_file_list, select

CSV = """File,Article Citation,Accession ID,Last Updated (YYYY-MM-DD HH:MM:SS),PMID,License
oa_package/08/e0/PMC13900.tar.gz,Breast Cancer Res. 2001 Nov 2; 3(1):55-60,PMC13900,2019-11-05 11:56:11,11250746,NO-CC CODE
oa_package/b0/ac/PMC13901.tar.gz,Breast Cancer Res. 2001 Nov 9; 3(1):61-65,PMC13901,2021-01-13 07:12:55,11250747,CC BY
oa_package/f7/98/PMC13902.tar.gz,"Breast Cancer Res. 2001 Nov 8; 3(1):66-75",PMC13902,2022-03-01 00:00:00,11250748,CC BY
oa_package/9c/7f/PMC3460867.tar.gz,PLoS One. 2012 Sep 28; 7(9):e46493,PMC3460867,2023-06-15 12:00:00,23029536,CC BY
oa_package/12/34/PMC1790863.tar.gz,PLoS ONE. 2007 Feb 14; 2(2):e217,PMC1790863,2020-05-01 00:00:00,,CC0
"""

TXT = """2023-09-22 05:31:40
oa_package/08/e0/PMC13900.tar.gz\tBreast Cancer Res. 2001 Nov 2; 3(1):55-60\tPMC13900\tPMID:11250746\tNO-CC CODE
oa_package/b0/ac/PMC13901.tar.gz\tBreast Cancer Res. 2001 Nov 9; 3(1):61-65\tPMC13901\tPMID:11250747\tCC BY
"""


def test_csv_layout():
    refs = list(parse_file_list(CSV, "list.csv"))
    assert [r.pmcid for r in refs] == [
        "PMC13900",
        "PMC13901",
        "PMC13902",
        "PMC3460867",
        "PMC1790863",
    ]
    r = refs[0]
    assert r.file == "oa_package/08/e0/PMC13900.tar.gz"
    assert (r.journal, r.year, r.pmid, r.license) == (
        "Breast Cancer Res",
        2001,
        "11250746",
        "NO-CC CODE",
    )
    assert r.last_updated == "2019-11-05 11:56:11"
    assert refs[4].pmid == ""


def test_txt_layout():
    refs = list(parse_file_list(TXT, "list.txt"))
    assert [(r.pmcid, r.pmid, r.license, r.journal) for r in refs] == [
        ("PMC13900", "11250746", "NO-CC CODE", "Breast Cancer Res"),
        ("PMC13901", "11250747", "CC BY", "Breast Cancer Res"),
    ]
    assert refs[0].last_updated == ""


def test_bad_rows_name_the_line():
    with pytest.raises(InputError, match="list.csv:2"):
        list(parse_file_list("File,Accession ID\n,\n", "list.csv"))
    with pytest.raises(InputError, match="empty"):
        list(parse_file_list("", "list.csv"))


def test_citation():
    assert parse_citation("PLoS One. 2012; 7(9):e46493") == ("PLoS One", 2012)
    assert parse_citation("J. Biol. Chem. 1999 Jan 1; 274(1):1-5") == ("J. Biol. Chem", 1999)
    assert parse_citation("garbage") == ("", None)


def _sel(**kw):
    return select(parse_file_list(CSV), ListConfig(**kw))


def test_filters():
    assert _sel().counts == {"rows": 5, "selected": 5, "dropped": {}}
    r = _sel(licenses=("cc by", "CC0"))
    assert [x.pmcid for x in r.selected] == ["PMC13901", "PMC13902", "PMC1790863", "PMC3460867"]
    assert r.counts["dropped"] == {"license": 1}
    r = _sel(journals=("plos one",))
    assert {x.pmcid for x in r.selected} == {"PMC3460867", "PMC1790863"}
    r = _sel(updated_from=date(2021, 1, 1), updated_to=date(2022, 12, 31))
    assert [x.pmcid for x in r.selected] == ["PMC13901", "PMC13902"]
    assert r.counts["dropped"] == {"date_range": 3}
    r = _sel(year_from=2005, year_to=2010)
    assert [x.pmcid for x in r.selected] == ["PMC1790863"]


def test_sample_is_deterministic_and_order_free():
    refs = list(parse_file_list(CSV))
    a = select(refs, ListConfig(sample=3, seed=7)).selected
    b = select(list(reversed(refs)), ListConfig(sample=3, seed=7)).selected
    assert a == b and len(a) == 3
    c = select(refs, ListConfig(sample=3, seed=8)).selected
    assert len(c) == 3
    # a larger sample contains the smaller one (same seed)
    assert set(select(refs, ListConfig(sample=4, seed=7)).selected) >= set(a)


def test_duplicate_rows_dropped():
    text = CSV + CSV.splitlines()[1] + "\n"
    r = select(parse_file_list(text), ListConfig())
    assert r.counts["dropped"] == {"duplicate_row": 1} and r.counts["selected"] == 5
