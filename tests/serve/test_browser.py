"""The browser app in a real headless Chromium (Debian package) driven by Playwright.

Screenshots go to $BIOMEDCLIP_ARTIFACTS (or a temporary folder); the test prints where.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("BIOMEDCLIP_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} not found (.ci/run installs the chromium package)")
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    d = Path(os.environ.get("BIOMEDCLIP_ARTIFACTS", tmp_path)) / "serve-browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_classify_and_search_pages(browser, server, example_dir, artifacts):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")

    # research-use notice and the model card's widget examples
    assert page.get_by_role("note").is_visible()
    assert "Research use only" in page.get_by_role("note").inner_text()
    labels = page.locator("#labels").input_value().splitlines()
    assert labels == [
        "squamous cell carcinoma histopathology",
        "adenocarcinoma histopathology",
        "left-sided pleural effusion chest x-ray",
    ]
    page.wait_for_function("document.querySelector('#model-info').textContent.includes('32-d')")

    # classify a model-card example image: bars and heatmap render
    image = example_dir / "squamous_cell_carcinoma_histopathology.jpeg"
    page.locator("#file-classify").set_input_files(str(image))
    page.wait_for_function("document.querySelector('#preview').naturalWidth > 0")
    page.get_by_role("button", name="Classify").click()
    page.wait_for_function("document.querySelector('#heatmap').naturalWidth > 0", timeout=60_000)
    bars = page.locator("#bars li")
    assert bars.count() == 3
    widths = [
        float(bars.nth(i).locator(".fill").evaluate("e => e.getBoundingClientRect().width"))
        for i in range(3)
    ]
    assert all(w > 0 for w in widths) and widths == sorted(widths, reverse=True)
    pcts = [float(t.rstrip("%")) for t in page.locator("#bars .pct").all_inner_texts()]
    assert sum(pcts) == pytest.approx(100, abs=0.3)
    assert page.locator("#heatmap").is_visible()
    assert "Done" in page.locator("#classify-status").inner_text()
    page.screenshot(path=str(artifacts / "classify.png"), full_page=True)

    # keyboard: the tabs switch with the arrow keys, the search runs with Enter
    page.locator("#tab-classify").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#page-search").is_visible()
    assert page.evaluate("document.activeElement.id") == "tab-search"
    page.locator("#query").fill("chest x ray")
    page.locator("#query").press("Enter")
    page.wait_for_function("document.querySelectorAll('#results li').length > 0")
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    cards = page.locator("#results li")
    assert cards.count() == 12
    first_caption = cards.first.inner_text()
    page.screenshot(path=str(artifacts / "search.png"), full_page=True)

    # clicking an image result searches by that image: it comes back first with score 1
    hit = page.locator("#results li button:not([disabled])").first
    hit_id = hit.locator(".id").inner_text()
    hit.click()
    page.wait_for_function(
        "document.querySelector('#search-status').textContent.includes('image of')"
    )
    page.wait_for_function(
        "document.querySelector('#search-status').textContent.includes('results')"
    )
    assert page.locator("#results li .id").first.inner_text() == hit_id
    assert page.locator("#results li .score").first.inner_text().endswith("1.000")
    assert first_caption

    # a broken file shows the service's message, not a crash
    page.locator("#tab-classify").click()
    bad = artifacts / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    page.locator("#file-classify").set_input_files(str(bad))
    page.get_by_role("button", name="Classify").click()
    page.wait_for_function("document.querySelector('#classify-status').classList.contains('error')")
    assert "image" in page.locator("#classify-status").inner_text()

    assert not errors, errors
    offsite = [u for u in requests if not u.startswith(server.url) and not u.startswith("data:")]
    assert not offsite, f"the app reached outside the server: {offsite}"
    print(f"screenshots in {artifacts}")
    page.close()
