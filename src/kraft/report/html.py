"""A self-contained HTML report of one or more simulation results (Plotly, working offline:
plotly.js is inlined once). One scenario per results folder; with several, every plot draws
one trace per scenario and a table compares them.

Plots: GPU allocation over time, queue length, JCT CDF per tier, facility energy and location
carbon per hour beside the grid's carbon intensity, IT power against each site's budget; and
a per-tenant table.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def _timeline(scenarios: list[Scenario]) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("GPUs allocated", "jobs waiting"))
    for s in scenarios:
        tl = s.results["timeline"]
        x = _days(tl["hour"])
        fig.add_trace(go.Scatter(x=x, y=tl["allocated_gpus"], name=f"{s.label}: allocated",
                                 mode="lines", line_shape="hv"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=tl["waiting_jobs"], name=f"{s.label}: waiting",
                                 mode="lines", line_shape="hv"), row=2, col=1)
    first = scenarios[0].results
    fig.add_hline(y=first["fleet_gpus"], line_dash="dot", row=1, col=1,
                  annotation_text=f"fleet: {first['fleet_gpus']:,} GPUs")
    fig.update_xaxes(title_text="day of the run", row=2, col=1)
    fig.update_layout(title="Allocation and queue", height=560)
    return fig


def _jct_cdf(scenarios: list[Scenario]) -> go.Figure | None:
    fig = go.Figure()
    for s in scenarios:
        if s.jobs is None:
            continue
        done = s.jobs["finish_s"] >= 0
        jct_h = (s.jobs["finish_s"] - s.jobs["submit_s"])[done] / 3600
        tiers = s.jobs["tier"][done]
        for tier in sorted(set(tiers)):
            x = np.sort(jct_h[tiers == tier])
            if x.size > 2000:  # plot 2,000 quantiles, not every job
                x = np.quantile(x, np.linspace(0, 1, 2000))
            fig.add_trace(go.Scatter(x=np.maximum(x, 1e-3), y=np.linspace(0, 1, x.size),
                                     name=f"{s.label}: {tier}", mode="lines"))
    if not fig.data:
        return None
    fig.update_xaxes(type="log", title_text="job completion time, hours (log)")
    fig.update_yaxes(title_text="share of jobs", range=[0, 1])
    fig.update_layout(title="JCT distribution per tier", height=420)
    return fig


def _site_hours(scenarios: list[Scenario]):
    """(scenario, site, day of each hour, hourly books, first scenario?) for every site of
    every scenario that kept its energy books."""
    with_books = [s for s in scenarios if "energy" in s.results]
    for s in with_books:
        for site, h in s.results["energy"]["hourly"].items():
            yield s, site, np.arange(len(h["it_kwh"])) / 24, h, s is with_books[0]


def _energy(scenarios: list[Scenario]) -> go.Figure | None:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for s, site, x, h, first in _site_hours(scenarios):
        kwh = np.asarray(h["it_kwh"]) * np.asarray(h["pue"])
        fig.add_trace(go.Scatter(x=x, y=kwh, name=f"{s.label} {site}: facility kWh/h",
                                 mode="lines"), secondary_y=False)
        fig.add_trace(go.Scatter(x=x, y=h["carbon_location_kg"], mode="lines",
                                 name=f"{s.label} {site}: kgCO2e/h (location)"),
                      secondary_y=False)
        if first:  # the grid signal is the same for every scenario
            fig.add_trace(go.Scatter(x=x, y=h["carbon_intensity_g_per_kwh"],
                                     name=f"{site}: grid gCO2e/kWh", mode="lines",
                                     line={"dash": "dot"}), secondary_y=True)
    if not fig.data:
        return None
    fig.update_xaxes(title_text="day of the run")
    fig.update_yaxes(title_text="per hour", secondary_y=False)
    fig.update_yaxes(title_text="grid gCO2e/kWh (location-based)", secondary_y=True)
    fig.update_layout(title="Energy and carbon per hour, beside the grid signal", height=460)
    return fig


def _power(scenarios: list[Scenario]) -> go.Figure | None:
    fig = go.Figure()
    for s, site, x, h, first in _site_hours(scenarios):
        fig.add_trace(go.Scatter(x=x, y=np.asarray(h["it_kwh"]) / 1e3, mode="lines",
                                 name=f"{s.label} {site}: IT MW"))
        budget = s.results["energy"]["per_site"][site]["budget_mw"]
        if first and budget:
            fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[budget, budget], mode="lines",
                                     name=f"{site}: budget MW", line={"dash": "dash"}))
    if not fig.data:
        return None
    fig.update_xaxes(title_text="day of the run")
    fig.update_yaxes(title_text="MW (hourly mean)")
    fig.update_layout(title="IT power against the site budget", height=420)
    return fig


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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


def _compare(scenarios: list[Scenario]) -> str:
    """One row per scenario. Energy and carbon twice, each named for what it sums: the jobs'
    (the CLI's energy table) and the sites' (jobs and idle GPUs, the CLI's "by site")."""
    rows = []
    for s in scenarios:
        r = s.results
        o = r["overall"]
        e = r.get("energy", {})
        site, jobs = e.get("per_site", {}), e.get("jobs")
        waiting = o.get("waiting_total_s", o["queue_delay_s"])
        util_arrivals = r.get("utilization_arrival_window")
        rows.append([s.label, r["fleet"], r["policy"], f"{r['jobs']['finished']:,}",
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
    return _table(["scenario", "fleet", "policy", "jobs done", "JCT mean h", "JCT p95 h",
                   "JCT p99 h", "queued mean h", "wait mean h", "wait p99 h", "slowdown",
                   "util run", "util arrivals", "preemptions", "jobs facility MWh",
                   "site facility MWh (jobs + idle)", "jobs tCO2e location",
                   "site tCO2e location (jobs + idle)"], rows)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"""


def render(scenarios: list[Scenario], title: str = "Kraft report") -> str:
    """The whole report as one HTML document (plotly.js inlined: opens offline)."""
    if not scenarios:
        raise ReportError("no scenario to report")
    figures = [f for f in (_timeline(scenarios), _jct_cdf(scenarios), _energy(scenarios),
                           _power(scenarios)) if f is not None]
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>Carbon figures are location-based throughout; market-based figures are in "
             "results.json and never mixed in.</p>"]
    if len(scenarios) > 1:
        parts += ["<h2>Scenarios</h2>", _compare(scenarios)]
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0
                                 else False, div_id=f"plot-{i}"))
    for s in scenarios:
        parts += [f"<h2>Tenants: {html.escape(s.label)}</h2>", _tenants(s)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
