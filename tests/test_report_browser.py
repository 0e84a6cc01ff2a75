"""report.html in a real headless Chromium: it loads cleanly and shows the figures.

Chromium and its driver come from the distribution's packages (``.ci/run``
installs them). Without them the test is skipped on a developer's machine,
never under CI, where a skip would hide a report nobody has opened.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from qbo_attach.report import build_report, write_html
from tests import auditkit

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
)

have_chromium = shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER)
pytestmark = pytest.mark.skipif(
    not have_chromium and not os.environ.get("CI"),
    reason="Chromium not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Selenium is told where both binaries are and to stay offline, so it
    # never looks for, or downloads, a browser or driver of its own.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(
            options=options, service=Service(executable_path=CHROMEDRIVER)
        )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(
    browser: webdriver.Chrome, tmp_path_factory: pytest.TempPathFactory
) -> webdriver.Chrome:
    settings = auditkit.write_migration(tmp_path_factory.mktemp("migration"))
    path = settings.log_dir / "report.html"
    write_html(build_report(settings), path)
    browser.get(Path(path).resolve().as_uri())
    return browser


def test_page_loads_without_console_errors(page: webdriver.Chrome) -> None:
    """The browser logs no error while it loads and draws the page."""
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert page.execute_script("return document.readyState") == "complete"


def test_page_fetches_no_resource(page: webdriver.Chrome) -> None:
    """Nothing besides the file itself is loaded: no fonts, styles or scripts."""
    resources = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources == []


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ("files-found", "11"),
        ("verified-ok", "7"),
        ("attached", "5"),
        ("failed", "1"),
        ("not-attempted", "1"),
        ("missing-mappings", "2"),
        ("bytes-uploaded", "12,000"),
        ("latency-p50", "300 ms"),
        ("latency-p95", "1,500 ms"),
        ("latency-max", "1,500 ms"),
        ("peak-per-minute", "2"),
        ("runs-count", "2"),
        ("run-1-files", "6"),
        ("run-2-files", "6"),
        ("run-2-skipped_already_uploaded", "3"),
        ("failure-1-code", "6000"),
    ],
    ids=lambda value: str(value),
)
def test_page_shows_the_logged_numbers(
    page: webdriver.Chrome, element: str, expected: str
) -> None:
    """Each figure on screen is the hand-counted number from the CSVs."""
    assert page.find_element(By.ID, element).text == expected


def test_charts_are_drawn(page: webdriver.Chrome) -> None:
    """The five charts render with a visible size."""
    charts = page.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 5
    for chart in charts:
        assert chart.size["width"] > 300
        assert chart.size["height"] > 50
