"""The HTML report: built from `kraft simulate --out` folders, opened in headless Chromium:
no console error, every plot drawn, the tenant table there."""

import json

from browser import chrome, console_errors, plots_drawn
from typer.testing import CliRunner

from kraft.cli import app


def simulate(out, policy):
    r = CliRunner().invoke(app, ["simulate", "--policy", policy, "--load", "0.8",
                                 "--no-breakdown", "--out", str(out)])
    assert r.exit_code == 0, r.output


def test_report_opens_offline_with_every_plot_drawn(tmp_path):
    simulate(tmp_path / "fifo", "fifo")
    simulate(tmp_path / "las", "las")
    page = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", "html", str(tmp_path / "fifo"), str(tmp_path / "las"),
                                 "-o", str(page)])
    assert r.exit_code == 0, r.output
    text = page.read_text()
    assert '<script src="http' not in text  # plotly.js inlined: nothing fetched
    tenants = json.loads((tmp_path / "fifo" / "results.json").read_text())["per_tenant"]
    driver = chrome()
    try:
        driver.get(page.as_uri())
        plots, drawn = plots_drawn(driver)
        assert plots == 5 and drawn == 5, (plots, drawn)
        assert console_errors(driver) == []
        body = driver.find_element("tag name", "body").text
        assert all(name in driver.page_source for name in tenants)  # folded, per scenario
        assert "Scenarios" in body and "fifo" in body and "las" in body
        # one run: a header naming it, axis labels, a per-tier table; kWh and kgCO2e apart
        one = tmp_path / "one.html"
        r = CliRunner().invoke(app, ["report", "html", str(tmp_path / "fifo"), "-o", str(one)])
        assert r.exit_code == 0, r.output
        driver.get(one.as_uri())
        body = driver.find_element("tag name", "body").text
        assert "fleet philly-mini (352 GPUs), trace philly-sample (10,281 jobs), policy fifo, " \
               "offered load 0.80, --load 0.8" in body, body[:400]
        assert "By tier" in body and "reserved" in body and all(t in body for t in tenants)
        titles = driver.execute_script("""return [...document.querySelectorAll(
            '[class^=g-y], [class^=g-x]')].filter(t => /title/.test(t.getAttribute('class')))
            .map(t => t.textContent)""")  # every axis title, secondary axes' included
        for axis in ("GPUs allocated", "jobs waiting", "facility kWh / h", "kgCO2e / h",
                     "grid gCO2e/kWh", "day of the run"):
            assert any(axis in t for t in titles), (axis, titles)
        assert console_errors(driver) == []
        # kraft compare writes the same kind of report
        cmp = tmp_path / "compare.html"
        r = CliRunner().invoke(app, ["compare", "--policies", "fifo,srtf", "--load", "0.8",
                                     "--no-energy", "--report", str(cmp)])
        assert r.exit_code == 0, r.output
        driver.get(cmp.as_uri())
        plots, drawn = plots_drawn(driver)
        assert plots == drawn == 3  # allocation, queue and JCT; no energy books asked
        # fifo's queue dwarfs srtf's: a log axis, so srtf's is not a flat line at zero
        assert "jobs waiting (log; 0.5 = none)" in cmp.read_text()
        assert console_errors(driver) == []
        assert "srtf" in driver.find_element("tag name", "body").text
    finally:
        driver.quit()


def test_report_of_a_missing_folder_says_so(tmp_path):
    r = CliRunner().invoke(app, ["report", "html", str(tmp_path / "none")])
    assert r.exit_code == 2 and "not found" in r.output


def test_the_report_names_each_energy_figure_as_the_cli_does(tmp_path):
    """The compare table said 80.0 MWh (the sites', idle GPUs included) under the same label
    as the CLI's 68.6 (the jobs'). Now both are there, each named for what it sums, beside
    the wait, the JCT percentiles and both utilisations."""
    from kraft.report.html import _compare, load_scenario

    simulate(tmp_path / "fifo", "fifo")
    res = json.loads((tmp_path / "fifo" / "results.json").read_text())
    html = _compare([load_scenario(tmp_path / "fifo")])
    jobs_mwh = res["energy"]["jobs"]["facility_kwh"] / 1e3
    site_mwh = sum(s["facility_kwh"] for s in res["energy"]["per_site"].values()) / 1e3
    assert site_mwh > jobs_mwh * 1.05  # the idle GPUs: the two figures do differ
    for label in ("jobs facility MWh", "site facility MWh (jobs + idle)", "wait mean h",
                  "JCT p99 h", "util arrivals"):
        assert label in html
    assert f"{jobs_mwh:,.1f}" in html and f"{site_mwh:,.1f}" in html
    assert f"{res['utilization_arrival_window']:.1%}" in html
