"""`kraft report eed | tenant | ai-act | nkom`: from a simulation's results folder
(--results), from the live database (--db, or the SQLite of --data-dir), or, for a tenant,
over the API (KRAFT_SERVER, KRAFT_TOKEN). --out writes JSON, CSV and an HTML page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()

Results = Annotated[Optional[Path], typer.Option(
    help="a folder written by kraft simulate --out (its record.parquet)")]
Db = Annotated[Optional[str], typer.Option(
    envvar="KRAFT_DB", help="or: the live service's database (postgresql://…)")]
DataDir = Annotated[Optional[Path], typer.Option(
    help="or: the live service's state folder (its SQLite database, unless --db)")]
Period = Annotated[Optional[int], typer.Option(
    help="the year reported (default: this year live; a simulation's signal year)")]
Fleet = Annotated[Optional[str], typer.Option(
    help="the run's or the served fleet, if not bundled or not on record")]
SiteFileOpt = Annotated[Optional[Path], typer.Option(
    help="the operator's site file: what Kraft cannot know (docs/reporting.md)")]
Out = Annotated[Optional[Path], typer.Option(
    help="write <report>.json, .csv and .html into this folder")]
AsJson = Annotated[bool, typer.Option("--json", help="print the report as JSON")]
Shared = Annotated[Optional[Path], typer.Option(
    "--shared-data", envvar="KRAFT_DATA_DIR",
    help="the shared data folder, for a simulation's signal series not bundled")]


def _fail(message: str):
    from kraft.cli import _fail as fail

    fail(message)


def _source(results, db, data_dir, period, fleet, shared, tenant=None, all_time=False):
    """A Source from the results folder or the live database; errors are one clear line."""
    from kraft.reporting.sources import from_live, from_results
    from kraft.spec.load import SpecError, load_fleet

    try:
        if results is not None:
            res = results / "results.json"
            if not res.exists():
                _fail(f"{res}: not found; write it with kraft simulate --out {results}")
            name = fleet or json.loads(res.read_text())["fleet"]
            return from_results(results, load_fleet(name), shared, period)
        import datetime as dt

        from kraft.control.cli import DEFAULT_HOME, _engine
        from kraft.control.nodes import served_fleet
        from kraft.control.store import sessions
        from kraft.control.usage import LiveBooks

        with sessions(_engine(data_dir or DEFAULT_HOME, db))() as s:
            spec = load_fleet(fleet) if fleet else served_fleet(s)
            if spec is None:
                _fail("no fleet on record: give --fleet, or start kraft serve once")
            year = None if all_time else (period or dt.datetime.now(dt.UTC).year)
            return from_live(s, LiveBooks(spec), year, time.time(), tenant)
    except (SpecError, ValueError) as e:
        _fail(str(e))


def _site_file(path, cluster):
    from kraft.reporting.sitefile import load_site_file
    from kraft.spec.load import SpecError

    try:
        return load_site_file(path, cluster.fleet)
    except SpecError as e:
        _fail(str(e))


def _emit(report: dict, out: Path | None, as_json: bool, table) -> None:
    if out is not None:
        from kraft.reporting.pages import write

        paths = write(report, out)
    if as_json:
        print(json.dumps(report, default=str))
    else:
        table()
    if out is not None:
        console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False,
                      soft_wrap=True)


def eed(results: Results = None, db: Db = None, data_dir: DataDir = None,
        period: Period = None, site: Annotated[Optional[str], typer.Option(
            help="one site only")] = None,
        fleet: Fleet = None, site_file: SiteFileOpt = None, out: Out = None,
        as_json: AsJson = False, shared_data: Shared = None) -> None:
    """EU Energy Efficiency Directive data-centre report per site (Delegated Regulation
    2024/1364 Annexes I-II): energy, PUE, water, WUE, waste heat, ERF, renewables by
    instrument, REF, installed IT power, each field marked measured, modelled or
    operator-given."""
    from kraft.reporting import make

    src = _source(results, db, data_dir, period, fleet, shared_data)
    report = make.eed(src, _site_file(site_file, src.cluster))
    if site is not None:
        if site not in report["sites"]:
            _fail(f"no site {site!r} in {src.cluster.fleet.name}; sites: "
                  f"{', '.join(report['sites'])}")
        report["sites"] = {site: report["sites"][site]}

    def table():
        t = Table(title=f"EED indicators {report['year']}, {src.cluster.fleet.name}, "
                        f"{report['period']}", title_justify="left")
        for col in ("site", "IT MWh", "PUE", "WUE L/kWh", "REF", "ERF", "IT kW", "due"):
            t.add_column(col, justify="left" if col == "site" else "right")
        for name, body in report["sites"].items():
            f = {k: v["value"] for k, v in body["fields"].items()}
            t.add_row(name, f"{f['it_energy'] / 1e3:,.1f}", _num(f["pue"], 3),
                      _num(f["wue"], 2), _num(f["ref"], 2), _num(f["erf"], 2),
                      f"{f['installed_it_power']:,.0f}",
                      body["due"] if body["must_report"] else "under 500 kW")
        console.print(t)
        missing = sorted({k for b in report["sites"].values() for k, v in b["fields"].items()
                          if v["source"] == "not given"})
        if missing:
            console.print(f"not given (--site-file): {', '.join(missing)}", highlight=False)

    _emit(report, out, as_json, table)


def tenant(results: Results = None, db: Db = None, data_dir: DataDir = None,
           period: Period = None,
           tenant_name: Annotated[Optional[str], typer.Option(
               "--tenant", help="one tenant (the operator, or a simulation); a tenant over "
                                "the API gets its own")] = None,
           fleet: Fleet = None, out: Out = None, as_json: AsJson = False,
           shared_data: Shared = None) -> None:
    """A tenant's energy and scope-2 carbon per month and site, location- and market-based
    apart, with its hourly carbon-free energy score (CSRD ESRS E1-5/E1-6). With neither
    --results, --db nor --data-dir: your own, over the API."""
    from kraft.reporting import make

    if results is None and db is None and data_dir is None:
        from kraft.control.cli import _check, _client

        with _client() as c:
            params = {"period": period} if period else {}
            report = _check(c.get("/v1/reports/tenant", params=params)).json()
    else:
        report = make.tenant(_source(results, db, data_dir, period, fleet, shared_data),
                             tenant_name)

    def table():
        for name, body in report["tenants"].items():
            t = Table(title=f"{name}: {report['period']}", title_justify="left",
                      caption="two scope-2 bases, never added; CFE: the hourly-matched "
                              "carbon-free share")
            for col in ("month", "site", "MWh", "kgCO2e location", "kgCO2e market", "CFE"):
                t.add_column(col, justify="left" if col in ("month", "site") else "right")
            for r in body["rows"]:
                t.add_row(r["month"], r["site"], f"{r['energy_kwh'] / 1e3:,.3f}",
                          f"{r['carbon_location_kg']:,.2f}", f"{r['carbon_market_kg']:,.2f}",
                          f"{r['cfe_score']:.1%}")
            tot = body["totals"]
            t.add_row("total", "", f"{tot['energy_kwh'] / 1e3:,.3f}",
                      f"{tot['carbon_location_kg']:,.2f}", f"{tot['carbon_market_kg']:,.2f}",
                      "" if tot["cfe_score"] is None else f"{tot['cfe_score']:.1%}",
                      style="bold")
            console.print(t)
        if not report["tenants"]:
            console.print("no tenant ran in the period")

    _emit(report, out, as_json, table)


def ai_act(run: Annotated[str, typer.Option(
               help="a job name, or a pattern of the run's job names ('pretrain-7b-*')")],
           tenant_name: Annotated[Optional[str], typer.Option(
               "--tenant", help="the model's provider (a tenant over the API: itself)")]
           = None,
           results: Results = None, db: Db = None, data_dir: DataDir = None,
           fleet: Fleet = None, out: Out = None, as_json: AsJson = False,
           shared_data: Shared = None) -> None:
    """EU AI Act documentation of a training run: training compute in FLOP with its
    method, training time, energy (modelled), and the 10^23 and 10^25 FLOP lines (Articles
    51-53, Annex XI). With neither --results, --db nor --data-dir: your own run, over the API."""
    from kraft.reporting import make

    if results is None and db is None and data_dir is None:  # a tenant: its own, over the API
        from kraft.control.cli import _check, _client

        with _client() as c:
            report = _check(c.get("/v1/reports/ai-act", params={"run": run})).json()
    else:
        if tenant_name is None:
            _fail("--tenant: whose run (with --results, --db or --data-dir)")
        src = _source(results, db, data_dir, None, fleet, shared_data, tenant_name,
                      all_time=True)
        try:
            report = make.ai_act(src, tenant_name, run)
        except ValueError as e:
            _fail(str(e))
    tenant_name = report["tenant"]

    def table():
        t = Table(title=f"AI Act: {tenant_name} / {run} ({len(report['jobs'])} jobs)",
                  title_justify="left", show_header=False)
        t.add_column("")
        t.add_column("", overflow="fold")
        t.add_row("training compute", f"{report['training_compute_flop']:.3e} FLOP")
        t.add_row("method", report["method"])
        t.add_row("GPU-hours", f"{report['gpu_hours']:,.1f}")
        t.add_row("training", f"{report['training_start_utc'][:16]} to "
                              f"{report['training_end_utc'][:16]} UTC, "
                              f"{report['training_time_h']:,.1f} h"
                              + (" (still running)" if report["still_running"] else ""))
        t.add_row("energy", f"{report['energy_facility_kwh'] / 1e3:,.3f} MWh facility, "
                            f"{report['energy_it_kwh'] / 1e3:,.3f} MWh IT ("
                            f"{report['energy_source'].split(':')[0]})")
        console.print(t)
        for n in report["notices"] or ["below 10^23 FLOP: no AI Act compute line crossed"]:
            console.print(n, highlight=False)

    _emit(report, out, as_json, table)


def nkom(fleet: Annotated[Optional[str], typer.Option(
             help="the fleet (default: the served one on record, with --db/--data-dir)")]
         = None,
         db: Db = None, data_dir: DataDir = None, site_file: SiteFileOpt = None,
         out: Out = None, as_json: AsJson = False) -> None:
    """Norway's data-centre registration record (Nkom) for each Norwegian site, from the
    fleet and the operator's site file."""
    from kraft.cluster.state import ClusterState
    from kraft.reporting import make
    from kraft.spec.load import SpecError, load_fleet

    try:
        if fleet is None:
            from kraft.control.cli import DEFAULT_HOME, _engine
            from kraft.control.nodes import served_fleet
            from kraft.control.store import sessions

            with sessions(_engine(data_dir or DEFAULT_HOME, db))() as s:
                spec = served_fleet(s)
            if spec is None:
                _fail("no fleet on record: give --fleet")
        else:
            spec = load_fleet(fleet)
    except (SpecError, ValueError) as e:
        _fail(str(e))
    cluster = ClusterState(spec)
    report = make.nkom(cluster, _site_file(site_file, cluster))

    def table():
        if not report["sites"]:
            console.print(f"{spec.name} has no site in Norway: nothing to register")
        for name, body in report["sites"].items():
            t = Table("field", "value", "source", title=f"Nkom registration: {name} ("
                      f"{'must register' if body['must_register'] else 'below 0.5 MW'})",
                      title_justify="left")
            for key, f in body["fields"].items():
                value = f["value"]
                shown = ", ".join(value) if isinstance(value, list) else \
                    ("not given" if value is None else f"{value} {f['unit']}".strip())
                t.add_row(key.replace("_", " "), shown, f["source"])
            console.print(t)

    _emit(report, out, as_json, table)


def _num(v, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def register(report_app: typer.Typer) -> None:
    from kraft.cli import _guard

    report_app.command("eed")(_guard(eed))
    report_app.command("tenant")(_guard(tenant))
    report_app.command("ai-act")(_guard(ai_act))
    report_app.command("nkom")(_guard(nkom))
