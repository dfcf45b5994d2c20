"""Each report as files: JSON (the whole report), CSV (one row per field or figure) and a
readable, self-contained HTML page (no script, so nothing to fail in a browser)."""

from __future__ import annotations

import csv
import io
import json
from html import escape
from pathlib import Path

import numpy as np

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.6em}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}.src-modelled{color:#555}.src-not-given{color:#b00}
.note{background:#fff6d8;padding:6px 10px;border-left:4px solid #e0b000}
.h td{width:2.2em;padding:2px;text-align:center;font-size:11px}"""


def write(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    name = report["report"]
    paths = [out / f"{name}.json", out / f"{name}.csv", out / f"{name}.html"]
    paths[0].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths[1].write_text(to_csv(report))
    paths[2].write_text(to_html(report))
    return paths


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    kind = report["report"]
    if kind in ("eed", "nkom"):
        w.writerow(["site", "field", "value", "unit", "source", "ref"])
        for site, body in report["sites"].items():
            for key, f in body["fields"].items():
                value = json.dumps(f["value"]) if isinstance(f["value"], list) else f["value"]
                w.writerow([site, key, value, f["unit"], f["source"], f["ref"]])
    elif kind == "tenant":
        cols = ["month", "site", "grid_zone", "energy_kwh", "carbon_location_kg",
                "carbon_market_kg", "cfe_kwh", "cfe_score"]
        w.writerow(["tenant", *cols])
        for tenant, body in report["tenants"].items():
            for r in body["rows"]:
                w.writerow([tenant, *(r[c] for c in cols)])
    else:
        w.writerow(["field", "value"])
        for key, value in report.items():
            w.writerow([key, json.dumps(value) if isinstance(value, list | dict) else value])
    return buf.getvalue()


def _v(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return "; ".join(", ".join(f"{k} {v}" for k, v in x.items()) if isinstance(x, dict)
                         else str(x) for x in value)
    return str(value)


def _fields_table(fields: dict) -> str:
    rows = "".join(
        f"<tr><td>{escape(k.replace('_', ' '))}</td><td class=n>{escape(_v(f['value']))}</td>"
        f"<td>{escape(f['unit'])}</td><td class='src-{f['source'].replace(' ', '-')}'>"
        f"{escape(f['source'])}</td><td>{escape(f['ref'])}</td></tr>"
        for k, f in fields.items())
    return ("<table><tr><th>field</th><th>value</th><th>unit</th><th>source</th>"
            f"<th>asked by</th></tr>{rows}</table>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
            f"</title><style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}"
            "<p>Definitions and sources: docs/reporting.md.</p></body></html>\n")


def to_html(report: dict) -> str:
    kind = report["report"]
    if kind == "eed":
        parts = [f"<p>{escape(report['period'])}</p>"]
        for site, body in report["sites"].items():
            must = "must report" if body["must_report"] else "below the 500 kW threshold"
            parts.append(f"<h2>{escape(site)}</h2><p>{must}; due {body['due']}</p>"
                         + _fields_table(body["fields"])
                         + "<p>Not known to Kraft: " + escape("; ".join(
                             body["not_known"].values())) + "</p>")
        return _page(f"EED data-centre report {report['year']}", "".join(parts))
    if kind == "nkom":
        parts = [f"<h2>{escape(site)}</h2><p>"
                 f"{'must register' if body['must_register'] else 'below 0.5 MW'}</p>"
                 + _fields_table(body["fields"]) for site, body in report["sites"].items()]
        return _page(f"Nkom data-centre registration, {report['fleet']}",
                     "".join(parts) or "<p>No site in Norway.</p>")
    if kind == "tenant":
        return _page(f"Tenant sustainability figures, {report['period']}",
                     "".join(_tenant(name, body) for name, body in report["tenants"].items())
                     or "<p>No tenant ran in the period.</p>")
    notices = "".join(f"<p class=note>{escape(n)}</p>" for n in report["notices"])
    rows = "".join(f"<tr><td>{escape(k.replace('_', ' '))}</td><td>{escape(_v(v))}</td></tr>"
                   for k, v in report.items() if k not in ("notices", "report", "jobs"))
    jobs = ", ".join(f"{j['name']} ({j['id']})" for j in report["jobs"])
    return _page(f"AI Act training documentation: {report['tenant']} / {report['run']}",
                 f"{notices}<table>{rows}</table><p>Jobs: {escape(jobs)}</p>")


def _tenant(name: str, body: dict) -> str:
    t = body["totals"]
    score = "n/a" if t["cfe_score"] is None else f"{t['cfe_score']:.1%}"
    head = (f"<h2>{escape(name)}</h2><p>{t['energy_kwh'] / 1e3:,.3f} MWh; "
            f"{t['carbon_location_kg']:,.2f} kgCO2e location-based and "
            f"{t['carbon_market_kg']:,.2f} kgCO2e market-based (two bases, never added); "
            f"24/7 carbon-free energy score {score}</p>")
    cols = ("month", "site", "grid_zone", "energy_kwh", "carbon_location_kg",
            "carbon_market_kg", "cfe_score")
    rows = "".join("<tr>" + "".join(
        f"<td class=n>{_v(r[c])}</td>" if isinstance(r[c], float) else f"<td>{escape(r[c])}</td>"
        for c in cols) + "</tr>" for r in body["rows"])
    table = ("<table><tr>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
             + f"</tr>{rows}</table>")
    return head + table + "".join(_hour_grid(site, h) for site, h in body["hourly"].items())


def _hour_grid(site: str, hourly: dict) -> str:
    """The carbon-free share by hour of the day (columns) and day (rows, at most 31 shown):
    where hourly matching falls short."""
    share = np.array([np.nan if v is None else v for v in hourly["cfe_share"]], float)
    used = np.array(hourly["energy_kwh"])
    days = min(31, len(share) // 24)
    if days == 0:
        return ""
    cells = []
    for d in range(days):
        tds = []
        for h in range(24):
            i = d * 24 + h
            v = share[i] if used[i] > 0 else np.nan
            colour = "#fff" if np.isnan(v) else f"hsl({120 * v:.0f},65%,{85 - 25 * v:.0f}%)"
            tds.append(f"<td style='background:{colour}'>"
                       f"{'' if np.isnan(v) else f'{100 * v:.0f}'}</td>")
        cells.append(f"<tr><th>day {d + 1}</th>{''.join(tds)}</tr>")
    hours = "".join(f"<th>{h}</th>" for h in range(24))
    return (f"<h3>{escape(site)}: carbon-free share of each hour (%), from "
            f"{escape(hourly['first_hour_utc'][:16])} UTC</h3><table class=h><tr><th></th>"
            f"{hours}</tr>{''.join(cells)}</table>")
