"""Rich tables of simulation results (display only; the numbers come from sim.metrics)."""

from __future__ import annotations

from rich.table import Table


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def results_table(rows: list[tuple[str, dict, dict | None]], title: str,
                  lower_bound: dict | None = None) -> Table:
    """rows: (label, results, timing). `lower_bound`: results to draw the no-queueing row."""
    table = Table(title=title, title_justify="left")
    for col in ("policy", "JCT mean h", "p50 h", "p95 h", "p99 h", "wait p50 h", "wait p95 h",
                "slowdown", "util", "preempt", "lost GPU-h", "frag GPU-h", "rejected",
                "cycle p50 ms", "cycle p99 ms"):  # JCT: completion time; wait: queueing
        table.add_column(col, justify="left" if col == "policy" else "right",
                         no_wrap=col == "policy")
    if lower_bound is not None:
        lb = lower_bound["overall"]["lower_bound_jct_mean_s"]
        table.add_row("no-queueing bound", _h(lb), "", "", "", "0.00", "0.00", "1.00",
                      "", "", "", "", "", "", "", style="dim")
    for label, res, timing in rows:
        o = res["overall"]
        table.add_row(
            label, _h(o["jct_s"]["mean"]), _h(o["jct_s"]["p50"]), _h(o["jct_s"]["p95"]),
            _h(o["jct_s"]["p99"]), _h(o["queue_delay_s"]["p50"]), _h(o["queue_delay_s"]["p95"]),
            f"{o['slowdown']:.2f}", f"{res['utilization']:.2f}", str(res["preemptions"]),
            f"{res['lost_gpu_hours']:.0f}", f"{res['fragmented_gpu_hours']:.0f}",
            str(res["jobs"]["rejected"]),
            f"{timing['p50_ms']:.3f}" if timing else "",
            f"{timing['p99_ms']:.2f}" if timing else "")
    return table


def breakdown_table(res: dict, by: str) -> Table:
    """Per tier or per tenant: JCT and queueing delay."""
    key = {"tier": "per_tier", "tenant": "per_tenant"}[by]
    table = Table(title=f"by {by}", title_justify="left")
    for col in (by, "jobs", "JCT mean h", "p99 h", "wait mean h", "wait p95 h", "slowdown",
                "GPU-h", "preempt"):
        table.add_column(col, justify="left" if col == by else "right", no_wrap=col == by)
    for name, g in res[key].items():
        table.add_row(name, str(g["jobs"]), _h(g["jct_s"]["mean"]), _h(g["jct_s"]["p99"]),
                      _h(g["queue_delay_s"]["mean"]), _h(g["queue_delay_s"]["p95"]),
                      f"{g['slowdown']:.2f}", f"{g['gpu_hours']:.0f}", str(g["preemptions"]))
    return table


def energy_table(rows: list[tuple[str, dict]], title: str, raw: bool = False) -> Table:
    """rows: (label, results) -- or, with raw, (label, books group) from results.energy."""
    table = Table(title=title, title_justify="left")
    for col in ("", "IT MWh", "facility MWh", "PUE", "tCO2e location", "tCO2e market",
                "energy EUR", "GPU-h charges EUR", "compute FLOP"):
        table.add_column(col, justify="left" if not col else "right", no_wrap=not col)
    for label, res in rows:
        g = res if raw else res["energy"]["jobs"]
        it, fac = g["it_kwh"], g["facility_kwh"]
        table.add_row(label, f"{it / 1e3:,.1f}", f"{fac / 1e3:,.1f}",
                      f"{fac / it:.3f}" if it else "", f"{g['carbon_location_kg'] / 1e3:,.2f}",
                      f"{g['carbon_market_kg'] / 1e3:,.2f}", f"{g['energy_cost_eur']:,.0f}",
                      f"{g['gpu_hour_charge_eur']:,.0f}", f"{g['flop']:.2e}")
    return table


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
    """Per site: energy, PUE, carbon on both bases (apart), cost, peak power against budget."""
    table = Table(title="by site", title_justify="left")
    for col in ("site", "zone", "IT MWh", "idle MWh", "PUE", "tCO2e location",
                "tCO2e market", "energy EUR", "peak IT MW", "budget MW"):
        table.add_column(col, justify="left" if col in ("site", "zone") else "right")
    for name, g in res["energy"]["per_site"].items():
        table.add_row(name, g["grid_zone"], f"{g['it_kwh'] / 1e3:,.1f}",
                      f"{g['idle_it_kwh'] / 1e3:,.1f}", f"{g['pue']:.3f}",
                      f"{g['carbon_location_kg'] / 1e3:,.2f}",
                      f"{g['carbon_market_kg'] / 1e3:,.2f}", f"{g['energy_cost_eur']:,.0f}",
                      f"{g['peak_it_mw']:.3f}", f"{g['budget_mw']:g}")
    return table
