"""Rich tables of simulation results (display only; the numbers come from sim.metrics)."""

from __future__ import annotations

from rich.table import Table


def fitted(title: str, headers: list[str], rows: list[list[str]], left: int = 1,
           caption: str | None = None, styles: list[str | None] | None = None) -> Table:
    """A table whose numbers stay whole at 100 terminal columns: each numeric column is as wide
    as its longest cell or header word (headers wrap at spaces), two spaces apart, no box.
    The first `left` columns hold names, left-aligned; a number too wide for the terminal
    folds onto a second line, never "…"."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  box=None, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        if i < left:
            table.add_column(header, no_wrap=True)
            continue
        width = max([len(w) for w in header.split()] + [len(r[i]) for r in rows])
        table.add_column(header, justify="right", overflow="fold", min_width=width,
                         max_width=width)
    for row, style in zip(rows, styles or [None] * len(rows)):
        table.add_row(*row, style=style)
    return table


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


# (header, value from (results, timing), shown by default); the default set keeps every number
# whole at 100 columns, `-o wide` shows all
_COLUMNS = (
    ("JCT mean h", lambda r, t: _h(r["overall"]["jct_s"]["mean"]), True),
    ("JCT p50 h", lambda r, t: _h(r["overall"]["jct_s"]["p50"]), False),
    ("JCT p95 h", lambda r, t: _h(r["overall"]["jct_s"]["p95"]), False),
    ("JCT p99 h", lambda r, t: _h(r["overall"]["jct_s"]["p99"]), True),
    ("queued p50 h", lambda r, t: _h(r["overall"]["queue_delay_s"]["p50"]), False),
    ("queued p95 h", lambda r, t: _h(r["overall"]["queue_delay_s"]["p95"]), True),
    ("wait mean h", lambda r, t: _h(_waiting(r)["mean"]), True),
    ("wait p95 h", lambda r, t: _h(_waiting(r)["p95"]), True),
    ("wait p99 h", lambda r, t: _h(_waiting(r)["p99"]), False),
    ("slowdown", lambda r, t: f"{r['overall']['slowdown']:.2f}", True),
    ("util run", lambda r, t: f"{r['utilization']:.2f}", True),
    ("util arrivals", lambda r, t: _util_arrivals(r), True),
    ("preempt", lambda r, t: str(r["preemptions"]), True),
    ("lost GPU-h", lambda r, t: f"{r['lost_gpu_hours']:.0f}", False),
    ("frag GPU-h", lambda r, t: f"{r['fragmented_gpu_hours']:.0f}", False),
    ("rejected", lambda r, t: str(r["jobs"]["rejected"]), True),
    ("cycle p50 ms", lambda r, t: f"{t['p50_ms']:.3f}" if t else "", False),
    ("cycle p99 ms", lambda r, t: f"{t['p99_ms']:.2f}" if t else "", False),
)
RESULTS_CAPTION = ("no-queueing bound: every job starts on arrival; queued: submission to "
                   "first start; wait: all time not running, "
                   "requeues after preemption included; util run: over the whole run, tail "
                   "included; util arrivals: from the first to the last submission")


def _waiting(res: dict) -> dict:  # results written before waiting_total_s: queueing only
    return res["overall"].get("waiting_total_s", res["overall"]["queue_delay_s"])


def _util_arrivals(res: dict) -> str:
    u = res.get("utilization_arrival_window")
    return "" if u is None else f"{u:.2f}"


def results_table(rows: list[tuple[str, dict, dict | None]], title: str,
                  lower_bound: dict | None = None, wide: bool = False) -> Table:
    """rows: (label, results, timing). `lower_bound`: results to draw the no-queueing row.
    `wide`: every column (else the ones that fit 100 terminal columns)."""
    columns = [c for c in _COLUMNS if wide or c[2]]
    cells, styles = [], []
    if lower_bound is not None:
        bound = {"JCT mean h": _h(lower_bound["overall"]["lower_bound_jct_mean_s"]),
                 "queued p50 h": "0.00", "queued p95 h": "0.00", "wait mean h": "0.00",
                 "wait p95 h": "0.00", "wait p99 h": "0.00", "slowdown": "1.00"}
        cells.append(["no-queueing bound", *[bound.get(h, "") for h, _, _ in columns]])
        styles.append("dim")
    for label, res, timing in rows:
        cells.append([label, *[value(res, timing) for _, value, _ in columns]])
        styles.append(None)
    return fitted(title, ["policy", *[h for h, _, _ in columns]], cells,
                  caption=RESULTS_CAPTION, styles=styles)


def breakdown_table(res: dict, by: str) -> Table:
    """Per tier or per tenant: JCT, queueing delay and total waiting time."""
    key = {"tier": "per_tier", "tenant": "per_tenant"}[by]
    rows = []
    for name, g in res[key].items():
        waiting = g.get("waiting_total_s", g["queue_delay_s"])
        rows.append([name, str(g["jobs"]), _h(g["jct_s"]["mean"]), _h(g["jct_s"]["p99"]),
                     _h(g["queue_delay_s"]["mean"]), _h(waiting["mean"]), _h(waiting["p95"]),
                     f"{g['slowdown']:.2f}", f"{g['gpu_hours']:.0f}", str(g["preemptions"])])
    return fitted(f"by {by}", [by, "jobs", "JCT mean h", "JCT p99 h", "queued mean h",
                               "wait mean h", "wait p95 h", "slowdown", "GPU-h", "preempt"],
                  rows)


def energy_table(rows: list[tuple[str, dict]], title: str, raw: bool = False) -> Table:
    """rows: (label, results) -- or, with raw, (label, books group) from results.energy.
    The jobs' energy only: the sites' idle GPUs are in site_table."""
    cells = []
    for label, res in rows:
        g = res if raw else res["energy"]["jobs"]
        it, fac = g["it_kwh"], g["facility_kwh"]
        cells.append([label, f"{it / 1e3:,.1f}", f"{fac / 1e3:,.1f}",
                      f"{fac / it:.3f}" if it else "", f"{g['carbon_location_kg'] / 1e3:,.2f}",
                      f"{g['carbon_market_kg'] / 1e3:,.2f}", f"{g['energy_cost_eur']:,.0f}",
                      f"{g['gpu_hour_charge_eur']:,.0f}", f"{g['flop']:.2e}"])
    return fitted(title, ["", "jobs IT MWh", "jobs facility MWh", "PUE",
                          "jobs tCO2e location", "jobs tCO2e market", "energy EUR",
                          "GPU-h charges EUR", "compute FLOP"], cells)


def shift_table(summary: dict, title: str) -> Table:
    """Carbon of the flexible jobs: agnostic, shifted, the limit; and the JCT paid."""
    c, sv, jct = summary["carbon_location_kg"], summary["saving"], summary["jct_mean_s"]
    table = Table(title=title, title_justify="left")
    for col in ("", "flexible jobs tCO2e (location)", "saving", "JCT mean h, flexible",
                "JCT mean h, all jobs"):
        table.add_column(col, justify="left" if not col else "right", no_wrap=not col)
    table.add_row("carbon-agnostic", f"{c['agnostic'] / 1e3:,.3f}", "",
                  _h(jct["flexible_agnostic"]), _h(jct["all_agnostic"]))
    table.add_row("shifted, perfect forecast", f"{c['shifted'] / 1e3:,.3f}",
                  f"{sv['shifted']:.1%}", _h(jct["flexible_shifted"]), _h(jct["all_shifted"]))
    if "shifted_forecast" in c:
        table.add_row(f"shifted, {summary['forecast']['shifted_forecast']} forecast",
                      f"{c['shifted_forecast'] / 1e3:,.3f}", f"{sv['shifted_forecast']:.1%}",
                      _h(jct["flexible_shifted_forecast"]), _h(jct["all_shifted_forecast"]))
    table.add_row("limit: each at its best hour", f"{c['limit'] / 1e3:,.3f}",
                  f"{sv['limit']:.1%}", "", "", style="dim")
    table.add_row("Let's Wait Awhile (DE, ML jobs)", "", f"{sv['lets_wait_awhile_de_ml']:.1%}",
                  "", "", style="dim")
    table.caption = (f"{summary['flexible_jobs']:,} of {summary['jobs']:,} jobs flexible. "
                     "A perfect forecast reads the recorded series; a real one knows only "
                     "the past (docs/energy.md).")
    return table


def site_table(res: dict) -> Table:
    """Per site: energy, PUE, carbon on both bases (apart), cost, peak power against budget.
    The site's figures: its jobs' energy and its idle GPUs' (the jobs' alone: energy_table)."""
    rows = []
    for name, g in res["energy"]["per_site"].items():
        rows.append([name, g["grid_zone"], f"{g['it_kwh'] / 1e3:,.1f}",
                     f"{g['idle_it_kwh'] / 1e3:,.1f}", f"{g['pue']:.3f}",
                     f"{g['carbon_location_kg'] / 1e3:,.2f}",
                     f"{g['carbon_market_kg'] / 1e3:,.2f}", f"{g['energy_cost_eur']:,.0f}",
                     f"{g['peak_it_mw']:.3f}", f"{g['budget_mw']:g}"])
    return fitted("by site (jobs and idle GPUs)",
                  ["site", "zone", "site IT MWh", "of it idle MWh", "PUE",
                   "site tCO2e location", "site tCO2e market", "energy EUR", "peak IT MW",
                   "budget MW"], rows, left=2)
