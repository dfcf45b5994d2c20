"""Headless Chromium for the browser tests (Debian's chromium and chromium-driver, driven by
Selenium). `.ci/run` installs them; elsewhere the tests skip and say how to get them."""

from __future__ import annotations

import os
import shutil

import pytest


def chrome():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("chromium / chromedriver missing in CI: .ci/run should install them")
        pytest.skip("browser tests need Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def plots_drawn(driver) -> tuple[int, int]:
    """(plot divs, plot divs with a drawn SVG and at least one trace)."""
    return driver.execute_script("""
        const plots = [...document.querySelectorAll('.js-plotly-plot')];
        const drawn = plots.filter(p => p.querySelector('svg.main-svg') &&
                                        p.data && p.data.length > 0 &&
                                        p.querySelectorAll('g.trace').length > 0);
        return [plots.length, drawn.length];""")
