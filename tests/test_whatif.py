"""What-if sweeps: 12 scenarios over the (bundled) Philly trace in parallel processes, a
comparison table and a report that opens in headless Chromium; an interrupted sweep resumes
without redoing finished scenarios; the same sweep on a real Ray cluster."""

import json
import shutil

from browser import chrome, console_errors, plots_drawn
from test_engines import ray_cluster  # noqa: F401  (the Ray test cluster fixture)
from typer.testing import CliRunner

from kraft.cli import app

SWEEP = """name: t
fleets: [philly-mini]
traces: [philly-sample]
policies: [fifo, backfill, fairshare]
load: 0.8
parameters:
  reservation_scale: [1, 2]
  gpus_added: [0, 64]
"""


def run(*args):
    return CliRunner().invoke(app, ["whatif", *map(str, args)])


def test_twelve_scenarios_table_report_and_resume(tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    r = run(spec, "--out", out, "--workers", "2")
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    by = {(r["policy"], r["gpus_added"], r["reservation_scale"]): r for r in rows}
    assert by[("fifo", 0, 1.0)]["jct_mean_h"] > by[("backfill", 0, 1.0)]["jct_mean_h"]
    assert by[("fifo", 64, 1.0)]["fleet_gpus"] == 352 + 64
    # same arrivals on a bigger fleet: FIFO's queue shrinks
    assert by[("fifo", 64, 1.0)]["jct_mean_h"] < by[("fifo", 0, 1.0)]["jct_mean_h"]

    # every scenario named by what varies, not by its ~130-character id
    page = (out / "report.html").read_text()
    assert "fifo, gpus_added=64, reservation_scale=2" in page
    assert rows[0]["id"] not in page
    # why adding GPUs raised preemptions, said with its cause
    assert "64 GPUs added: preemptions" in r.output
    assert "a reserved tenant taking back GPUs lent to others" in page
    driver = chrome()
    try:
        driver.get((out / "report.html").as_uri())
        plots, drawn = plots_drawn(driver)
        assert plots == drawn == 5  # allocation (small multiples), queue, JCT, energy, power
        assert console_errors(driver) == []
        # readable at 1,400 pixels: nothing wider than the window, no plot squeezed by its
        # legend (they were ~130 px wide beside legends of 130-character names)
        page_px = driver.execute_script("return document.documentElement.scrollWidth")
        assert page_px <= 1400, page_px
        plot_px = driver.execute_script("""return [...document.querySelectorAll(
            '.js-plotly-plot')].map(p => p.querySelector('.bglayer rect')
            ?.getBoundingClientRect().width || 0)""")  # each plot's first drawing area
        assert min(plot_px) >= 300 and max(plot_px) >= 1000, plot_px
        driver.save_screenshot(str(tmp_path / "report.png"))  # kept beside the test's output
    finally:
        driver.quit()

    # interrupted: one scenario lost, one left half-written; the rerun does only that one
    victim = out / rows[5]["id"]
    shutil.rmtree(victim)
    (out / f".{rows[5]['id']}.tmp").mkdir()
    kept = {p.name: (p / "results.json").stat().st_mtime_ns for p in out.iterdir()
            if p.is_dir() and not p.name.startswith(".")}
    r = run(spec, "--out", out)
    assert r.exit_code == 0, r.output
    assert "12 scenarios, 11 already done" in r.output
    for name, mtime in kept.items():
        assert (out / name / "results.json").stat().st_mtime_ns == mtime, name
    assert (victim / "results.json").exists()
    assert json.loads((out / "summary.json").read_text()) == rows


def test_bad_sweep_names_the_field(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nfleets: [philly-mini]\ntraces: [philly-sample]\n"
                    "policies: [fifo]\nparameters: {gpus_added: [-8]}\n")
    r = run(spec)
    assert r.exit_code == 2 and "gpus_added" in r.output and "Traceback" not in r.output
    spec.write_text(SWEEP.replace("fairshare", "lottery"))
    r = run(spec)
    assert r.exit_code == 2 and "lottery" in r.output


def test_sweep_on_a_ray_cluster(tmp_path, ray_cluster):  # noqa: F811
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP.replace("[fifo, backfill, fairshare]", "[fifo]")
                    .replace("[1, 2]", "[1]"))
    out = tmp_path / "out"
    r = run(spec, "--out", out, "--ray", "127.0.0.1:6380")
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 2 and all((out / row["id"] / "jobs.parquet").exists() for row in rows)


def test_no_ray_cluster_at_the_address_is_a_clear_error_in_seconds(tmp_path):
    """Was: minutes of Ray's own connection warnings, then a traceback."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP)
    t0 = time.monotonic()
    r = run(spec, "--out", tmp_path / "out", "--ray", f"127.0.0.1:{port}")
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"--ray 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port}" in said, said
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
