"""A self-contained HTML report of one or more simulation results (Plotly, working offline:
plotly.js is inlined once). One scenario per results folder; with several, every plot draws
one trace per scenario and a table compares them.

Plots: GPU allocation over time (one small plot per scenario from four scenarios), queue
length (log where one queue dwarfs the rest), JCT CDF per tier, facility energy and location
carbon per hour (apart) beside the grid's carbon intensity, IT power against each site's
budget; a header naming the run, per-tier and per-tenant tables. Legends sit below the plots.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import pyarrow.parquet as pq
from plotly.subplots import make_subplots


class ReportError(ValueError):
    pass


@dataclass
class Scenario:
    label: str
    results: dict
    jobs: dict[str, np.ndarray] | None  # columns of jobs.parquet, if written


def load_scenario(folder: Path, label: str | None = None) -> Scenario:
    path = folder / "results.json"
    if not path.exists():
        raise ReportError(f"{path}: not found; write one with kraft simulate --out {folder}")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    jobs = None
    if (folder / "jobs.parquet").exists():
        t = pq.read_table(folder / "jobs.parquet",
                          columns=["tier", "submit_s", "finish_s", "state"])
        jobs = {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}
    return Scenario(label or folder.name, results, jobs)


def job_columns(jobs) -> dict[str, np.ndarray]:
    """The columns the report reads, from a run's jobs in memory (as jobs.parquet holds)."""
    return {"tier": np.array([j.tenant.tier.value for j in jobs]),
            "submit_s": np.array([j.submit_s for j in jobs]),
            "finish_s": np.array([j.finish_s for j in jobs]),
            "state": np.array([j.state.name.lower() for j in jobs])}


def _days(hours) -> np.ndarray:
    return np.asarray(hours, float) / 24


# one colour per scenario, as many as a sweep has (Plotly's default cycle repeats after 10)
COLOURS = (px.colors.qualitative.Dark24 + px.colors.qualitative.Light24)
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}
SMALL_MULTIPLES_FROM = 4  # scenarios: from this many, one small plot each


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """Legends below the plot, so that long scenario names never squeeze it."""
    fig.update_layout(title=title, height=height, legend=LEGEND_BELOW,
                      margin={"l": 60, "r": 30, "t": 60, "b": 40})
    return fig


def _allocation(scenarios: list[Scenario]) -> go.Figure:
    """GPUs allocated over time: one plot, or one small plot per scenario where lines of
    many scenarios would lie on top of each other."""
    n = len(scenarios)
    cols = 3 if n >= SMALL_MULTIPLES_FROM else 1
    rows = -(-n // cols) if cols > 1 else 1
    fig = make_subplots(rows=rows, cols=cols, shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[s.label for s in scenarios] if cols > 1 else None,
                        vertical_spacing=0.3 / rows if rows > 1 else 0.1)
    fleet_gpus = scenarios[0].results["fleet_gpus"]
    for i, s in enumerate(scenarios):
        tl = s.results["timeline"]
        at = {"row": i // cols + 1, "col": i % cols + 1} if cols > 1 else {}
        fig.add_trace(go.Scatter(x=_days(tl["hour"]), y=tl["allocated_gpus"], name=s.label,
                                 mode="lines", line_shape="hv", showlegend=cols == 1,
                                 line={"color": _colour(i)}), **at)
    fig.add_hline(y=fleet_gpus, line_dash="dot", annotation_text=f"fleet: {fleet_gpus:,} GPUs")
    fig.update_xaxes(title_text="day of the run", row=rows)
    fig.update_yaxes(title_text="GPUs allocated", col=1)
    return _layout(fig, "GPUs allocated", 420 if cols == 1 else 160 + 200 * rows)


def _queue(scenarios: list[Scenario]) -> go.Figure:
    """Jobs waiting over time; on a log axis where one scenario's queue dwarfs the others'
    (peak over 5x the median peak: strict FIFO's, typically), so theirs are not flat at 0."""
    fig = go.Figure()
    peaks = []
    for i, s in enumerate(scenarios):
        tl = s.results["timeline"]
        waiting = np.asarray(tl["waiting_jobs"], float)
        peaks.append(waiting.max() if waiting.size else 0.0)
        fig.add_trace(go.Scatter(x=_days(tl["hour"]), y=waiting, name=s.label, mode="lines",
                                 line_shape="hv", line={"color": _colour(i)}))
    positive = sorted(p for p in peaks if p > 0)
    log = len(positive) > 1 and positive[-1] > 5 * positive[(len(positive) - 1) // 2]
    if log:  # zeros cannot sit on a log axis: the floor shows them
        for tr in fig.data:
            tr.y = np.maximum(tr.y, 0.5)
    fig.update_xaxes(title_text="day of the run")
    fig.update_yaxes(title_text="jobs waiting" + (" (log; 0.5 = none)" if log else ""),
                     type="log" if log else "linear")
    return _layout(fig, "Jobs waiting", 420)


def _jct_cdf(scenarios: list[Scenario]) -> go.Figure | None:
    """One small plot per tier, one line per scenario."""
    tiers = sorted({t for s in scenarios if s.jobs is not None
                    for t in set(s.jobs["tier"][s.jobs["finish_s"] >= 0])})
    if not tiers:
        return None
    fig = make_subplots(rows=1, cols=len(tiers), shared_yaxes=True, subplot_titles=tiers)
    for i, s in enumerate(scenarios):
        if s.jobs is None:
            continue
        done = s.jobs["finish_s"] >= 0
        jct_h = (s.jobs["finish_s"] - s.jobs["submit_s"])[done] / 3600
        for c, tier in enumerate(tiers, start=1):
            x = np.sort(jct_h[s.jobs["tier"][done] == tier])
            if x.size == 0:
                continue
            if x.size > 2000:  # plot 2,000 quantiles, not every job
                x = np.quantile(x, np.linspace(0, 1, 2000))
            fig.add_trace(go.Scatter(x=np.maximum(x, 1e-3), y=np.linspace(0, 1, x.size),
                                     name=s.label, mode="lines", legendgroup=s.label,
                                     showlegend=c == 1, line={"color": _colour(i)}),
                          row=1, col=c)
    fig.update_xaxes(type="log", title_text="job completion time, h (log)")
    fig.update_yaxes(title_text="share of jobs", range=[0, 1], col=1)
    return _layout(fig, "JCT distribution per tier", 440)


def _site_hours(scenarios: list[Scenario]):
    """(index, scenario, site, day of each hour, hourly books, first scenario?) for every
    site of every scenario that kept its energy books."""
    with_books = [s for s in scenarios if "energy" in s.results]
    for i, s in enumerate(with_books):
        for site, h in s.results["energy"]["hourly"].items():
            yield i, s, site, np.arange(len(h["it_kwh"])) / 24, h, s is with_books[0]


def _energy(scenarios: list[Scenario]) -> go.Figure | None:
    """Energy and carbon apart, each on its own axis: facility kWh per hour above; location
    kgCO2e per hour below, beside the grid's intensity (right axis)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        specs=[[{}], [{"secondary_y": True}]],
                        subplot_titles=("facility energy per hour",
                                        "location-based carbon per hour"))
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    sites: dict[str, int] = {}
    for i, s, site, x, h, first in _site_hours(scenarios):
        dash = dashes[sites.setdefault(site, len(sites)) % len(dashes)]
        name = f"{s.label} {site}" if len(sites) > 1 or len(scenarios) > 1 else site
        line = {"color": _colour(i), "dash": dash}
        fig.add_trace(go.Scatter(x=x, y=np.asarray(h["it_kwh"]) * np.asarray(h["pue"]),
                                 name=name, mode="lines", line=line, legendgroup=name),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=h["carbon_location_kg"], mode="lines", line=line,
                                 name=name, legendgroup=name, showlegend=False),
                      row=2, col=1, secondary_y=False)
        if first:  # the grid signal is the same for every scenario
            fig.add_trace(go.Scatter(x=x, y=h["carbon_intensity_g_per_kwh"],
                                     name=f"{site}: grid gCO2e/kWh", mode="lines",
                                     line={"dash": "dot", "color": "#888"}),
                          row=2, col=1, secondary_y=True)
    if not fig.data:
        return None
    fig.update_xaxes(title_text="day of the run", row=2, col=1)
    fig.update_yaxes(title_text="facility kWh / h", row=1, col=1)
    fig.update_yaxes(title_text="kgCO2e / h", row=2, col=1, secondary_y=False)
    fig.update_yaxes(title_text="grid gCO2e/kWh", row=2, col=1, secondary_y=True)
    return _layout(fig, "Energy and carbon per hour, beside the grid signal", 620)


def _power(scenarios: list[Scenario]) -> go.Figure | None:
    fig = go.Figure()
    for i, s, site, x, h, first in _site_hours(scenarios):
        fig.add_trace(go.Scatter(x=x, y=np.asarray(h["it_kwh"]) / 1e3, mode="lines",
                                 name=f"{s.label} {site}", line={"color": _colour(i)}))
        budget = s.results["energy"]["per_site"][site]["budget_mw"]
        if first and budget:
            fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[budget, budget], mode="lines",
                                     name=f"{site}: budget MW", line={"dash": "dash"}))
    if not fig.data:
        return None
    fig.update_xaxes(title_text="day of the run")
    fig.update_yaxes(title_text="IT MW (hourly mean)")
    return _layout(fig, "IT power against the site budget", 420)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            f"</table></div>")


def _tenants(s: Scenario) -> str:
    energy = s.results.get("energy", {}).get("per_tenant", {})
    rows = []
    for name, t in sorted(s.results["per_tenant"].items()):
        e = energy.get(name, {})
        rows.append([name, f"{t['jobs']:,}", f"{t['gpu_hours']:,.0f}",
                     f"{t['jct_s']['mean'] / 3600:,.2f}", f"{t['slowdown']:.2f}",
                     t["preemptions"], f"{e.get('facility_kwh', 0):,.0f}",
                     f"{e.get('carbon_location_kg', 0):,.0f}",
                     f"{e.get('gpu_hour_charge_eur', 0):,.0f}"])
    return _table(["tenant", "jobs", "GPU-h", "mean JCT h", "slowdown", "preemptions",
                   "facility kWh", "kgCO2e (location)", "charge EUR"], rows)


def _tiers(s: Scenario) -> str:
    rows = []
    for tier, g in s.results["per_tier"].items():
        waiting = g.get("waiting_total_s", g["queue_delay_s"])
        rows.append([tier, f"{g['jobs']:,}", f"{g['gpu_hours']:,.0f}",
                     *(f"{g['jct_s'][k] / 3600:,.2f}" for k in ("mean", "p95", "p99")),
                     f"{g['queue_delay_s']['mean'] / 3600:,.2f}",
                     f"{waiting['mean'] / 3600:,.2f}", f"{g['slowdown']:.2f}",
                     g["preemptions"]])
    return _table(["tier", "jobs", "GPU-h", "JCT mean h", "JCT p95 h", "JCT p99 h",
                   "queued mean h", "wait mean h", "slowdown", "preemptions"], rows)


def _header(s: Scenario) -> str:
    """What was run: fleet, trace, policy, load."""
    r = s.results
    ld = r["load"]
    target = f", --load {ld['target']:g}" if ld.get("target") is not None else ""
    return (f"<p class='run'><b>{html.escape(s.label)}</b>: fleet {html.escape(r['fleet'])} "
            f"({r['fleet_gpus']:,} GPUs), trace {html.escape(r['trace'])} "
            f"({r['jobs']['submitted']:,} jobs), policy {html.escape(str(r['policy']))}, "
            f"offered load {ld['offered']:.2f}{target}; utilisation {r['utilization']:.1%} "
            f"over the run, {r.get('utilization_arrival_window', 0):.1%} over the arrival "
            f"window</p>")


def _compare(scenarios: list[Scenario]) -> str:
    """One row per scenario. Energy and carbon twice, each named for what it sums: the jobs'
    (the CLI's energy table) and the sites' (jobs and idle GPUs, the CLI's "by site")."""
    rows = []
    several_fleets = len({s.results["fleet"] for s in scenarios}) > 1
    for s in scenarios:
        r = s.results
        o = r["overall"]
        e = r.get("energy", {})
        site, jobs = e.get("per_site", {}), e.get("jobs")
        waiting = o.get("waiting_total_s", o["queue_delay_s"])
        util_arrivals = r.get("utilization_arrival_window")
        rows.append([s.label, *([r["fleet"]] if several_fleets else []), r["policy"],
                     f"{r['jobs']['finished']:,}",
                     *(f"{o['jct_s'][k] / 3600:,.2f}" for k in ("mean", "p95", "p99")),
                     f"{o['queue_delay_s']['mean'] / 3600:,.2f}",
                     f"{waiting['mean'] / 3600:,.2f}", f"{waiting['p99'] / 3600:,.2f}",
                     f"{o['slowdown']:.2f}", f"{r['utilization']:.1%}",
                     "-" if util_arrivals is None else f"{util_arrivals:.1%}",
                     r["preemptions"],
                     f"{jobs['facility_kwh'] / 1e3:,.1f}" if jobs else "-",
                     f"{sum(v['facility_kwh'] for v in site.values()) / 1e3:,.1f}" if site
                     else "-",
                     f"{jobs['carbon_location_kg'] / 1e3:,.2f}" if jobs else "-",
                     f"{sum(v['carbon_location_kg'] for v in site.values()) / 1e3:,.2f}"
                     if site else "-"])
    return _table(["scenario", *(["fleet"] if several_fleets else []), "policy", "jobs done",
                   "JCT mean h", "JCT p95 h", "JCT p99 h", "queued mean h", "wait mean h",
                   "wait p99 h", "slowdown",
                   "util run", "util arrivals", "preemptions", "jobs facility MWh",
                   "site facility MWh (jobs + idle)", "jobs tCO2e location",
                   "site tCO2e location (jobs + idle)"], rows)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}
.scroll{overflow-x:auto;max-width:100%}p.run{margin:.3em 0}details{margin:.5em 0}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}"""


def render(scenarios: list[Scenario], title: str = "Kraft report",
           notes: list[str] | None = None) -> str:
    """The whole report as one HTML document (plotly.js inlined: opens offline). `notes`:
    paragraphs that explain the figures (e.g. why preemptions rose)."""
    if not scenarios:
        raise ReportError("no scenario to report")
    figures = [f for f in (_allocation(scenarios), _queue(scenarios), _jct_cdf(scenarios),
                           _energy(scenarios), _power(scenarios)) if f is not None]
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if len(scenarios) == 1:
        parts.append(_header(scenarios[0]))
    parts.append("<p>Carbon figures are location-based throughout; market-based figures are "
                 "in results.json and never mixed in. Energy named <i>jobs</i> sums the jobs' "
                 "own; <i>site</i> adds the idle GPUs.</p>")
    if len(scenarios) > 1:
        parts += ["<h2>Scenarios</h2>", _compare(scenarios)]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes or []]
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0
                                 else False, div_id=f"plot-{i}",
                                 config={"responsive": True}))
    if len(scenarios) == 1:
        s = scenarios[0]
        parts += ["<h2>By tier</h2>", _tiers(s), "<h2>Tenants</h2>", _tenants(s)]
    else:  # folded: a dozen scenarios' tables would bury the plots
        for s in scenarios:
            parts.append(f"<details><summary>{html.escape(s.label)}: by tier and tenant"
                         f"</summary>{_header(s)}{_tiers(s)}{_tenants(s)}</details>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
