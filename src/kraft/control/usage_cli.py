"""`kraft usage` (a tenant, over the API), `kraft admin usage` (the operator, from the
database), the books of `kraft job ID`, and `kraft report eed --db` (from what ran live)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from kraft.control.cli import (
    DEFAULT_HOME,
    DataDir,
    Db,
    DbFile,
    _check,
    _client,
    _engine,
    _fail,
    console,
)


class _Figure:
    """Two decimals from 1 up, four significant digits below (a short job's kgCO2e)."""

    @staticmethod
    def format(v: float) -> str:
        return f"{v:,.2f}" if abs(v) >= 1 or v == 0 else f"{v:.4g}"


FIG = _Figure()
COLUMNS = (("gpu_hours", "GPU-h", FIG), ("it_kwh", "IT kWh", FIG),
           ("facility_kwh", "facility kWh", FIG),
           ("carbon_location_kg", "kgCO2e location", FIG),
           ("carbon_market_kg", "kgCO2e market", FIG),
           ("energy_cost_eur", "energy EUR", FIG),
           ("gpu_hour_charge_eur", "GPU-hour EUR", FIG))
Since = Annotated[Optional[str], typer.Option(help="ISO date or time, UTC (default: the first "
                                                   "of this month)")]
Until = Annotated[Optional[str], typer.Option(help="ISO date or time, UTC (default: now)")]
ByOpt = Annotated[str, typer.Option("--by", help="tenant, site, day or job")]
Output = Annotated[str, typer.Option("-o", "--output", help="table, json or csv")]
Export = Annotated[Optional[Path], typer.Option(
    help="also write the rows to this .parquet or .csv file (for billing)")]


def show(data: dict, output: str, export: Path | None) -> None:
    if output not in ("table", "json", "csv"):
        _fail(f"-o {output}? Use table, json or csv")
    if export is not None:
        write_rows(data, export)
    if output == "json":
        console.print_json(json.dumps(data))
        return
    by = data["by"]
    if output == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([by, *(c for c, _, _ in COLUMNS)])
        for r in data["rows"]:
            w.writerow([r[by], *(r[c] for c, _, _ in COLUMNS)])
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(by, *(label for _, label, _ in COLUMNS),
                  title=f"usage {data['since'][:16]} to {data['until'][:16]} UTC "
                        f"({data['attempts']} attempts)", title_justify="left")
    for r in data["rows"]:
        table.add_row(Text(str(r[by])), *(fmt.format(r[c]) for c, _, fmt in COLUMNS))
    table.add_row("total", *(fmt.format(data["totals"][c]) for c, _, fmt in COLUMNS),
                  style="bold")
    table.caption = ("carbon: location-based (grid zone, hourly) and market-based (site "
                     "contract) shown apart, never added")
    console.print(table)
    if data.get("sites"):
        sites = Table("site", "zone", "IT kWh", "idle IT kWh", "facility kWh", "PUE",
                      "kgCO2e location", "kgCO2e market",
                      title=f"the sites' own books, from {data['sites_since'][:16]} UTC "
                            f"(the first attempt on record)",
                      title_justify="left")
        for name, g in data["sites"].items():
            sites.add_row(name, g["grid_zone"], f"{g['it_kwh']:,.2f}",
                          f"{g['idle_it_kwh']:,.2f}", f"{g['facility_kwh']:,.2f}",
                          f"{g['pue']:.3f}", f"{g['carbon_location_kg']:,.3f}",
                          f"{g['carbon_market_kg']:,.3f}")
        console.print(sites)
    if export is not None:
        console.print(f"wrote {export}")


def write_rows(data: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    by = data["by"]
    table = pa.table({by: [str(r[by]) for r in data["rows"]],
                      **{c: [r[c] for r in data["rows"]] for c, _, _ in COLUMNS}})
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        _fail(f"--export {path}: give a .parquet or .csv file")


def usage(since: Since = None, until: Until = None, by: ByOpt = "tenant",
          output: Output = "table", export: Export = None) -> None:
    """Your usage: GPU-hours, kWh, kgCO2e (location and market, apart) and cost, summed by
    tenant, site, day or job (like sreport)."""
    with _client() as c:
        data = _check(c.get("/v1/usage", params={k: v for k, v in
                                                 (("since", since), ("until", until),
                                                  ("by", by)) if v})).json()
    show(data, output, export)


def attempts_table(rows: list[dict]) -> Table:
    """One column per attempt (a job has few), one row per figure: readable at 80 columns."""
    table = Table("", *(f"attempt {a['attempt']}" for a in rows), title="attempts and their "
                  "books (modelled power)", title_justify="left")
    table.add_row("site", *(Text(a["site"]) for a in rows))
    table.add_row("GPUs", *(str(a["gpus"]) for a in rows))
    table.add_row("start (UTC)", *(a["start"][:19].replace("T", " ") for a in rows))
    table.add_row("end (UTC)", *((a["end"] or "running")[:19].replace("T", " ") for a in rows))
    table.add_row("ended", *(a["ended"] for a in rows))
    for key, label, fmt in COLUMNS:
        table.add_row(label, *(fmt.format(a[key]) for a in rows))
    return table


def admin_usage(since: Since = None, until: Until = None, by: ByOpt = "tenant",
                tenant: Annotated[Optional[str], typer.Option(help="one tenant")] = None,
                fleet: Annotated[Optional[str], typer.Option(
                    help="the served fleet (default: the one kraft serve keeps on record)")]
                = None,
                data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None,
                output: Output = "table", export: Export = None) -> None:
    """Every tenant's usage (or one's) and the sites' own books, from the database."""
    data, _ = _live_usage(fleet, data_dir, db, db_file, since, until, by, tenant)
    show(data, output, export)


def register_admin(admin_app: typer.Typer) -> None:
    admin_app.command("usage")(admin_usage)


def _live_usage(fleet, data_dir, db, db_file, since, until, by, tenant,
                period: tuple[float, float] | None = None) -> dict:
    import time

    from kraft.control.nodes import served_fleet
    from kraft.control.store import sessions
    from kraft.control.usage import LiveBooks, parse_time
    from kraft.control.usage_api import month_start
    from kraft.spec.load import SpecError, load_fleet

    try:
        now = time.time()
        a, b = period or (parse_time(since, month_start(now)), parse_time(until, now))
        with sessions(_engine(data_dir, db, db_file))() as s:
            fleet_spec = load_fleet(fleet) if fleet else served_fleet(s)
            if fleet_spec is None:
                _fail("no fleet on record: give --fleet, or start kraft serve once")
            return (LiveBooks(fleet_spec).usage(s, a, b, by, tenant, with_sites=True),
                    fleet_spec)
    except (SpecError, ValueError) as e:
        _fail(str(e))


def live_eed(fleet: str | None, data_dir, db, db_file, year: int):
    """The books of `year` from what ran live, for the EED indicators: (the results' energy
    section, the period said, the fleet)."""
    import time
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from kraft.control.store import AttemptRow, sessions

    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = min(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp(), time.time())
    with sessions(_engine(data_dir, db, db_file))() as s:
        first = s.scalar(select(func.min(AttemptRow.start_s)))
    if first is None or first >= end:
        raise ValueError(f"no job ran live in {year}")
    start = max(start, first)  # from the first record on: before it the site was not Kraft's
    data, fleet_spec = _live_usage(fleet, data_dir, db, db_file, None, None, "site", None,
                                   (start, end))
    said = (f"live record {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} to "
            f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC")
    return {"energy": {"per_site": data["sites"]}, "fleet": fleet_spec.name}, said, fleet_spec
