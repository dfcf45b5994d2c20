"""The `kraft` command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kraft.cli_shared import (
    DepthOpt,
    ParamOpt,
    PolicyOpt,
    PreferOpt,
    ShiftOpt,
    scheduling_options,
)
from kraft.cliapp import command_group
from kraft.infer.cli import infer_app
from kraft.sched.policy import make_policy, split_policies
from kraft.sched.scheduler import SchedulerConfig
from kraft.sim.traces import Trace, TraceError, load_trace
from kraft.sim.traces.canonical import write_canonical
from kraft.sim.workload import JobDefaults
from kraft.spec.load import SpecError, bundled_dir, load_fleet, load_tenants
from kraft.spec.models import FleetSpec, TenantsSpec

app = command_group("Kraft: control plane and digital twin for AI data centers.",
                    pretty_exceptions_enable=False)
trace_app = command_group("Job traces: convert and inspect.")
app.add_typer(trace_app, name="trace")
report_app = command_group("Reports: HTML of simulation results, and the regulatory "
                           "reports from the books (docs/reporting.md).")
app.add_typer(report_app, name="report")
app.add_typer(infer_app, name="infer")


def _version(show: bool) -> None:
    if show:
        from kraft import __version__

        print(f"kraft {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print Kraft's version and exit")]
          = False) -> None:
    """Kraft: control plane and digital twin for AI data centers."""
# the terminal's width; piped, 100 columns (COLUMNS where set): the default tables fit in 100
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 100)
err = Console(stderr=True)

SHARED_DATA = Path("..") / "shared" / "data"  # the project's convention, relative to the cwd

FleetOpt = Annotated[str, typer.Option(help="bundled fleet name or a fleet YAML path")]
TenantsOpt = Annotated[Optional[str], typer.Option(
    help="tenants YAML (default: the bundled tenants named like the fleet)")]
TraceOpt = Annotated[str, typer.Option(
    help="philly-sample (bundled), philly, openb, synthetic:N, or a trace file")]
LoadOpt = Annotated[Optional[float], typer.Option(
    help="compress arrivals to this offered load (docs/traces.md); default: as recorded")]
SeedOpt = Annotated[int, typer.Option(help="seed for generated traces; same seed, same results")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--shared-data", envvar="KRAFT_DATA_DIR",
    help="the shared data folder holding traces/, signals/ (default ../shared/data); not "
         "kraft serve's state folder (--data-dir)")]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", help="trace format of a file: canonical, philly, openb (default: detect)")]
CkptOpt = Annotated[float, typer.Option(
    help="checkpoint interval (s) where the trace has none; 0 = never checkpoint: a "
         "preempted or failed job restarts from its beginning")]
RestartOpt = Annotated[float, typer.Option(help="restart cost (s) where the trace has none")]
EnergyOpt = Annotated[bool, typer.Option(help="keep the energy, carbon and cost books")]
YearOpt = Annotated[int, typer.Option(help="signal year; trace time 0 is 1 January 00:00 UTC")]
UtilOpt = Annotated[float, typer.Option(help="GPU utilisation of busy GPUs for power (0-1]")]
FlexGpusOpt = Annotated[int, typer.Option(
    help="jobs of at most this many GPUs are flexible (where the trace says nothing)")]
WindowOpt = Annotated[float, typer.Option(help="flexibility window of flexible jobs, hours")]
LoadBasisOpt = Annotated[str, typer.Option(
    help="what --load is relative to: fleet (all its GPUs) or reachable (the GPUs on sites the "
         "trace's tenants may use, by their residency; docs/traces.md)")]
ViewOpt = Annotated[str, typer.Option(
    "-o", "--view", help="table: the columns that fit 100 terminal columns; wide: all of them "
                         "(percentiles, lost and fragmented GPU-hours, decision times)")]
ForecastOpt = Annotated[str, typer.Option(
    help="what shifting plans with: oracle (the recorded series: a perfect forecast, only a "
         "replay has one) or recent-days[-N] (the same hour over the last N days, as live)")]


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _data_dir(given: Path | None) -> Path | None:
    if given is not None:
        if not given.is_dir():
            _fail(f"--shared-data {given}: not a folder")
        return given
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def _specs(fleet: str, tenants: str | None) -> tuple[FleetSpec, TenantsSpec]:
    fleet_spec = load_fleet(fleet)
    if tenants is None:
        bundled = bundled_dir("tenants") / f"{fleet_spec.name}.yaml"
        tenants_spec = load_tenants(str(bundled)) if bundled.exists() else TenantsSpec()
    else:
        tenants_spec = load_tenants(tenants)
    reserved = sum(t.reserved_gpus for t in tenants_spec.all)
    if reserved > fleet_spec.gpu_count:
        raise SpecError(f"{tenants or 'bundled tenants ' + fleet_spec.name}: reservations "
                        f"total {reserved} GPUs but fleet "
                        f"{fleet_spec.name!r} has {fleet_spec.gpu_count}")
    return fleet_spec, tenants_spec


def _load_trace(trace: str, data_dir: Path | None, seed: int, fmt: str | None) -> Trace:
    loaded = load_trace(trace, _data_dir(data_dir), seed, fmt)
    if loaded.dropped:
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(loaded.dropped.items()))
        err.print(f"[yellow]trace {loaded.name}: {loaded.n_jobs} usable jobs of "
                  f"{loaded.rows_read} rows; dropped: {dropped}[/]", highlight=False)
    if loaded.n_jobs == 0:
        raise TraceError(f"trace {trace}: no usable jobs")
    return loaded


def _energy(fleet_spec: FleetSpec, keep: bool, year: int, util: float, data_dir: Path | None):
    """The books' inputs, or None (said loudly) when a site's series cannot be found."""
    if not keep:
        return None
    if not 0 < util <= 1:
        raise ValueError(f"--gpu-util must be in (0, 1], got {util}")
    from kraft.energy.books import inputs_for
    from kraft.signals.series import SignalError

    try:
        return inputs_for(fleet_spec, year, _data_dir(data_dir), util)
    except SignalError as e:
        err.print(f"[yellow]no energy books for this run: {e}[/]", highlight=False)
        return None


def _setup(policies: list[str], fleet: str, tenants: str | None, trace: str,
           data_dir: Path | None, seed: int, fmt: str | None, books: bool, signal_year: int,
           gpu_util: float):
    """What every simulating command needs, checked before any long work starts: the policy
    names, the specs, the trace and (if kept) the energy books' inputs."""
    for name in policies:
        make_policy(name)
    fleet_spec, tenants_spec = _specs(fleet, tenants)
    loaded = _load_trace(trace, data_dir, seed, fmt)
    return fleet_spec, tenants_spec, loaded, _energy(fleet_spec, books, signal_year, gpu_util,
                                                     data_dir)


def _run(fleet_spec, tenants_spec, trace, policy, load, seed, defaults, config, energy,
         label=None, shift_by=None, prefer=None, failures=None, options=None,
         load_basis="fleet"):
    """One replay; `options` (kraft.sched.build.SchedulingOptions), where given, is the
    whole scheduler's configuration and overrides policy, config, shift_by and prefer."""
    from kraft.sim.run import simulate

    extra = {}
    if options is not None:
        policy, config, shift_by, prefer = (options.policy, options.config, options.shift_by,
                                            options.prefer)
        extra = {"policy_params": options.policy_params, "forecast": options.forecast,
                 "maintenance": options.maintenance}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("jobs"), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(label or policy, total=trace.n_jobs)
        return simulate(fleet_spec, tenants_spec, trace, policy, load=load, seed=seed,
                        defaults=defaults, config=config, energy=energy,
                        shift_by=shift_by, prefer=prefer, failures=failures,
                        load_basis=load_basis, progress=lambda n: bar.advance(task, n), **extra)


def load_note(res: dict) -> str | None:
    """How to read the offered load, where the figure alone misleads: tenants that reach only
    part of the fleet, or an arrival window shorter than the longest job (a burst)."""
    ld = res["load"]
    if "reachable_gpus" not in ld:
        return None
    said = []
    fleet_gpus = res["fleet_gpus"]
    narrow = {name: t for name, t in ld["per_tenant"].items()
              if t["reachable_gpus"] < fleet_gpus}
    if narrow:
        said.append("residency: " + ", ".join(
            f"{name} reaches {t['reachable_gpus']:,} GPUs (offered {t['offered']:.2f} there)"
            for name, t in narrow.items()) + f"; all tenants together reach "
            f"{ld['reachable_gpus']:,} of {fleet_gpus:,} (offered {ld['offered_reachable']:.2f})")
    if ld["longest_job_h"] > ld["arrival_window_h"] > 0:
        said.append(f"the jobs arrive within {ld['arrival_window_h']:,.1f} h but the longest "
                    f"runs {ld['longest_job_h']:,.1f} h: much of the work runs after the last "
                    f"arrival, so utilisation over the run is far below the offered load (util "
                    f"arrivals is the figure it applies to)")
    return ("load = GPU-seconds demanded / (GPUs x arrival window); " + "; ".join(said)
            if said else None)


def _wide(view: str) -> bool:
    if view not in ("table", "wide"):
        raise ValueError(f"-o {view!r}? Use table or wide")
    return view == "wide"


def _print_results(table) -> None:
    """At its own width where that is wider than the terminal (-o wide): long lines, as
    `kubectl -o wide` prints them, rather than numbers folded into columns of letters."""
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update(width=10_000), table).maximum
    console.print(table, width=max(console.width, need), crop=False)


def _dir_name(label: str) -> str:
    """A folder name for a policy spec such as `las:thresholds_gpu_s=[1800,7200]`."""
    return "".join(c if c.isalnum() or c in "-._=" else "-" for c in label)


def _write(out: Path, run) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(run.results, indent=2, sort_keys=True) + "\n")
    (out / "timing.json").write_text(json.dumps(run.timing, indent=2, sort_keys=True) + "\n")
    from kraft.sim.metrics import job_table

    pq.write_table(job_table(run.outcome.jobs, run.job_energy), out / "jobs.parquet")
    if run.record is not None:
        from kraft.record import write_record

        write_record(run.record, out / "record.parquet")


def _guard(fn):
    """Turn user errors into one clear line and exit code 2, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SpecError, TraceError, ValueError) as e:
            _fail(str(e))
    return wrapper


@app.command()
@_guard
def simulate(
    fleet: FleetOpt = "philly-mini",
    tenants: TenantsOpt = None,
    trace: TraceOpt = "philly-sample",
    policy: PolicyOpt = "backfill",
    load: LoadOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="write results.json, timing.json, jobs.parquet, record.parquet here")] = None,
    data_dir: DataOpt = None,
    fmt: FormatOpt = None,
    checkpoint_interval: CkptOpt = 1800.0,
    restart_cost: RestartOpt = 60.0,
    scan_depth: DepthOpt = 100,
    breakdown: Annotated[bool, typer.Option(
        help="also print per-tier and per-tenant tables")] = True,
    energy: EnergyOpt = True,
    signal_year: YearOpt = 2024,
    gpu_util: UtilOpt = 1.0,
    flexible_gpus: FlexGpusOpt = 0,
    window_h: WindowOpt = 24.0,
    shift: ShiftOpt = None,
    prefer: PreferOpt = None,
    forecast: ForecastOpt = "oracle",
    param: ParamOpt = None,
    failures: Annotated[Optional[str], typer.Option(
        help="hardware failures: 'llama3' (Meta's rate, 1.97e-5 per GPU-hour) or a rate per "
             "GPU-hour; drawn with --seed")] = None,
    maintenance: Annotated[Optional[Path], typer.Option(
        help="a maintenance plan to replay: CSV target,start_h,end_h[,reason] "
             "(docs/operator.md)")] = None,
    view: ViewOpt = "table",
    load_basis: LoadBasisOpt = "fleet",
) -> None:
    """Replay a trace on a fleet under one policy and print the results."""
    from dataclasses import replace

    from kraft.report.tables import breakdown_table, energy_table, results_table, site_table
    from kraft.sim.maintenance import load_plan

    options = scheduling_options(policy, param, scan_depth, shift, prefer, forecast)
    if maintenance is not None:
        options = replace(options, maintenance=load_plan(maintenance))
    fleet_spec, tenants_spec, loaded, books = _setup(
        [policy], fleet, tenants, trace, data_dir, seed, fmt,
        energy or shift is not None or prefer is not None, signal_year, gpu_util)
    defaults = JobDefaults(checkpoint_interval or None, restart_cost, True, flexible_gpus,
                           window_h * 3600)
    from kraft.sim.failures import FailureModel, parse_rate

    model = FailureModel(parse_rate(failures), seed) if failures else None
    run = _run(fleet_spec, tenants_spec, loaded, policy, load, seed, defaults, None, books,
               failures=model, options=options, load_basis=load_basis)
    r = run.results
    console.print(f"[bold]{loaded.name}[/] on [bold]{fleet_spec.name}[/] "
                  f"({r['fleet_gpus']} GPUs), "
                  f"{r['jobs']['submitted']} jobs, offered load {r['load']['offered']:.2f}, "
                  f"policy {policy}; {r['jobs']['finished']} finished, "
                  f"{r['jobs']['rejected']} rejected", highlight=False)
    if note := load_note(r):
        console.print(note, style="dim", highlight=False)
    if "maintenance" in r:
        console.print(f"maintenance plan: {r['maintenance']['windows']} window(s), "
                      f"{r['maintenance']['node_hours']:,.1f} node-hours out of service",
                      highlight=False)
    _print_results(results_table([(policy, r, run.timing)], "results", lower_bound=r,
                                 wide=_wide(view)))
    if breakdown:
        console.print(breakdown_table(r, "tier"))
        if len(r["per_tenant"]) <= 30:
            console.print(breakdown_table(r, "tenant"))
    if "energy" in r:
        console.print(energy_table([(policy, r)], "energy, carbon and cost"))
        if breakdown:
            console.print(energy_table(list(r["energy"]["per_tier"].items()), "by tier",
                                       raw=True))
            if len(r["energy"]["per_tenant"]) <= 30:
                console.print(energy_table(list(r["energy"]["per_tenant"].items()),
                                           "by tenant", raw=True))
        console.print(site_table(r))
        for flag in r["energy"]["ai_act_flags"][:5]:
            console.print(f"  EU AI Act: job {flag['job']} of {flag['tenant']} used "
                          f"{flag['flop']:.2e} FLOP (> 1e25)", highlight=False)
    for reason, n in r["rejections"].items():
        console.print(f"  {n} {reason}", highlight=False)
    if "failures" in r:
        f = r["failures"]
        console.print(f"failures: {f['interruptions']} interruptions at {f['per_gpu_hour']:.3g} "
                      f"per GPU-hour; goodput {f['goodput']:.1%}, effective training time "
                      f"{f['effective_training_time']:.1%}", highlight=False)
        big = f.get("largest_job")
        if big:
            console.print(f"largest job ({big['gpus']} GPUs): MTBF {big['mtbf_h']} h; "
                          f"Young/Daly: checkpoint every {big['young_daly_checkpoint_interval_s']}"
                          f" s for a {big['assumed_checkpoint_cost_s']:.0f} s checkpoint",
                          highlight=False)
    console.print(f"scheduler: {run.timing['cycles']} cycles, p50 {run.timing['p50_ms']:.3f} ms, "
                  f"p99 {run.timing['p99_ms']:.2f} ms, {run.timing['total_s']:.1f} s in all",
                  highlight=False)
    if out is not None:
        _write(out, run)
        extra = ", record.parquet" if run.record is not None else ""
        console.print(f"wrote {out}/results.json, timing.json, jobs.parquet{extra}")


@app.command()
@_guard
def compare(
    policies: Annotated[str, typer.Option(
        help="comma-separated policies, each NAME or NAME:KEY=VALUE[,KEY=VALUE], e.g. "
             "fifo,fifo:fill=greedy,sjf")] = "fifo,backfill,fairshare,las,srtf",
    fleet: FleetOpt = "philly-mini",
    tenants: TenantsOpt = None,
    trace: TraceOpt = "philly-sample",
    load: LoadOpt = None,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="write one folder of results per policy here")] = None,
    data_dir: DataOpt = None,
    fmt: FormatOpt = None,
    checkpoint_interval: CkptOpt = 1800.0,
    restart_cost: RestartOpt = 60.0,
    scan_depth: DepthOpt = 100,
    energy: EnergyOpt = True,
    signal_year: YearOpt = 2024,
    gpu_util: UtilOpt = 1.0,
    report: Annotated[Optional[Path], typer.Option(
        help="also write an HTML report comparing the policies here")] = None,
    view: ViewOpt = "table",
    load_basis: LoadBasisOpt = "fleet",
) -> None:
    """Run several policies on the same trace and fleet; print one table."""
    from kraft.report.tables import energy_table, results_table

    names = split_policies(policies)
    fleet_spec, tenants_spec, loaded, books = _setup(
        names, fleet, tenants, trace, data_dir, seed, fmt, energy, signal_year, gpu_util)
    defaults = JobDefaults(checkpoint_interval or None, restart_cost)
    rows, scenarios = [], []
    for name in names:
        run = _run(fleet_spec, tenants_spec, loaded, name, load, seed, defaults,
                   SchedulerConfig(scan_depth=scan_depth), books, load_basis=load_basis)
        rows.append((name, run.results, run.timing))
        if out is not None:
            _write(out / _dir_name(name), run)
        if report is not None:
            from kraft.report.html import Scenario, job_columns

            scenarios.append(Scenario(name, run.results, job_columns(run.outcome.jobs)))
    first = rows[0][1]
    title = (f"{loaded.name} on {fleet_spec.name} ({first['fleet_gpus']} GPUs), "
             f"{first['jobs']['submitted']} jobs, offered load {first['load']['offered']:.2f}")
    if note := load_note(first):
        console.print(note, style="dim", highlight=False)
    _print_results(results_table(rows, title, lower_bound=first, wide=_wide(view)))
    if "energy" in first:
        console.print(energy_table([(label, res) for label, res, _ in rows],
                                   "energy, carbon (location- and market-based, apart) and cost"))
    if out is not None:
        console.print(f"wrote {out}/<policy>/results.json")
    if report is not None:
        from kraft.report.html import render

        report.write_text(render(scenarios, f"compare: {title}"))
        console.print(f"wrote {report}")


@app.command()
@_guard
def shift(
    fleet: FleetOpt = "philly-mini",
    tenants: TenantsOpt = None,
    trace: TraceOpt = "philly-sample",
    policy: Annotated[str, typer.Option(help="base policy")] = "backfill",
    by: Annotated[str, typer.Option(help="carbon or price")] = "carbon",
    flexible_gpus: FlexGpusOpt = 4,
    window_h: WindowOpt = 24.0,
    load: LoadOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataOpt = None,
    fmt: FormatOpt = None,
    signal_year: YearOpt = 2024,
    gpu_util: UtilOpt = 1.0,
    forecast: Annotated[str, typer.Option(
        help="the real forecast shown beside the perfect one: recent-days[-N]")] = "recent-days",
    out: Annotated[Optional[Path], typer.Option(help="write shift.json here")] = None,
) -> None:
    """What shifting flexible jobs in time saves: carbon-agnostic against shifted with a
    perfect forecast and with a real one (only the past), beside the physical limit, and what
    it cost in completion time."""
    from kraft.signals.forecast import make_forecast

    if make_forecast(forecast).perfect:
        _fail(f"--forecast {forecast}: give a real forecast to compare with the perfect one")
    from kraft.energy.shifting import shift_summary
    from kraft.report.tables import shift_table

    fleet_spec, tenants_spec, loaded, books = _setup(
        [policy], fleet, tenants, trace, data_dir, seed, fmt, True, signal_year, gpu_util)
    if books is None:
        _fail("shifting needs each site's signals (see the warning above)")
    defaults = JobDefaults(flexible_max_gpus=flexible_gpus, flex_window_s=window_h * 3600)
    config = SchedulerConfig()
    agnostic = _run(fleet_spec, tenants_spec, loaded, policy, load, seed, defaults, config,
                    books, label=f"{policy}, agnostic")
    shifted = _run(fleet_spec, tenants_spec, loaded, policy, load, seed, defaults, config,
                   books, label=f"{policy}, shifted by {by}, perfect forecast", shift_by=by)
    real = scheduling_options(policy, None, config.scan_depth, by, None, forecast)
    forecast_run = _run(fleet_spec, tenants_spec, loaded, policy, load, seed, defaults, config,
                        books, label=f"{policy}, shifted by {by}, {forecast}", options=real)
    summary = shift_summary(agnostic, shifted, fleet_spec, books, forecast_run,
                            make_forecast(forecast).name)
    zones = ", ".join(sorted({s.grid_zone for s in fleet_spec.sites}))
    console.print(shift_table(summary, f"{loaded.name} on {fleet_spec.name} ({zones}), "
                                       f"jobs of <= {flexible_gpus} GPUs flexible by "
                                       f"{window_h:g} h, {policy}"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "shift.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


@app.command()
@_guard
def whatif(
    sweep: Annotated[Path, typer.Argument(help="sweep YAML (docs/whatif.md)")],
    out: Annotated[Optional[Path], typer.Option(
        help="results folder (default: whatif-<name>); rerun to resume")] = None,
    workers: Annotated[int, typer.Option(min=1, help="parallel processes")] = 2,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", help="run the scenarios on this Ray cluster (address, e.g. auto or "
                      "ray://head:10001) instead of local processes")] = None,
    data_dir: DataOpt = None,
) -> None:
    """Run every scenario of a sweep (fleets x traces x policies x parameters) in parallel,
    then write a comparison table (summary.json) and report.html. Finished scenarios are
    kept: an interrupted sweep resumes where it stopped."""
    from rich.table import Table

    from kraft import whatif as w
    from kraft.report.html import load_scenario, render
    from kraft.spec.load import SpecError, load_yaml

    spec = load_yaml(sweep, w.SweepSpec)
    for name in spec.policies:
        make_policy(name)
    if ray:
        _ray_reachable(ray)  # before any work, not after Ray's two minutes of retries
    for fleet in spec.fleets:
        load_fleet(fleet)
    scenarios = spec.scenarios()
    out = out or Path(f"whatif-{spec.name}")
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in scenarios if not w.done(out, s)]
    data = _data_dir(data_dir)
    data_arg = str(data) if data else None
    payload = spec.model_dump(mode="json")
    console.print(f"{spec.name}: {len(scenarios)} scenarios, {len(scenarios) - len(todo)} "
                  f"already done in {out}", highlight=False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("scenarios"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task(spec.name, total=len(scenarios), completed=len(scenarios) - len(todo))
        for scenario, (results, jobs) in _scenario_results(w, payload, todo, data_arg, workers,
                                                           ray):
            w.save(out, scenario, results, jobs)
            bar.advance(task)
    rows = w.summary_rows(out, scenarios)
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = Table(title=f"what-if: {spec.name}", title_justify="left")
    cols = ["policy", *[p for p in w.PARAMS if len({str(r[p]) for r in rows}) > 1],
            "fleet_gpus", "jct_mean_h", "slowdown", "utilization", "preemptions", "failures",
            "facility_mwh", "carbon_location_t"]
    if len(spec.fleets) > 1:
        cols.insert(0, "fleet")
    if len(spec.traces) > 1:
        cols.insert(0, "trace")
    for c in cols:
        table.add_column(c, justify="left" if c in ("policy", "fleet", "trace") else "right")
    for r in rows:
        table.add_row(*[str(r[c]) for c in cols])
    console.print(table)
    notes = w.explain_preemptions(rows)
    for note in notes:
        console.print(note, highlight=False)
    names = w.labels(scenarios)
    try:
        page = render([load_scenario(out / s["id"], names[s["id"]]) for s in scenarios],
                      f"what-if: {spec.name}", notes)
    except SpecError as e:
        _fail(str(e))
    (out / "report.html").write_text(page)
    console.print(f"wrote {out}/summary.json and {out}/report.html")


RAY_CONNECT_TIMEOUT_S = 5.0


def _ray_reachable(address: str) -> None:
    """Fail at once, and clearly, where no Ray cluster listens at `address` (host:port or
    ray://host:port); Ray itself retries for about two minutes with only its warnings.
    `auto` is Ray's to resolve: it fails fast on its own."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        _fail(f"--ray {address}: no Ray cluster answers at {host}:{port} within "
              f"{RAY_CONNECT_TIMEOUT_S:g} s ({e.strerror or e}); start one (ray start --head) "
              f"or leave --ray out to run the scenarios in local processes")


def _scenario_results(w, payload, todo, data_arg, workers, ray_address):
    """(scenario, (results, jobs.parquet bytes)) as each finishes."""
    if not todo:
        return
    if ray_address:
        import ray

        try:
            ray.init(address=ray_address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:
            _fail(f"--ray {ray_address}: {str(e).splitlines()[0]}")
        try:
            remote = ray.remote(w.run_scenario)
            pending = {remote.remote(payload, s, data_arg): s for s in todo}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(ready[0]), ray.get(ready[0])
        finally:
            ray.shutdown()
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(w.run_scenario, payload, s, data_arg): s for s in todo}
        for f in as_completed(futures):
            yield futures[f], f.result()


@report_app.command("html")
@_guard
def report_html(
    results: Annotated[list[Path], typer.Argument(
        help="folders written by kraft simulate --out (several: one scenario each)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] =
    Path("report.html"),
    title: Annotated[str, typer.Option(help="the report's title")] = "Kraft report",
) -> None:
    """A self-contained HTML report (Plotly, works offline): allocation, queue, JCT per tier,
    energy and carbon beside the grid signal, power against budget, tenants."""
    from kraft.report.html import ReportError, load_scenario, render

    try:
        page = render([load_scenario(folder) for folder in results], title)
    except ReportError as e:
        _fail(str(e))
    output.write_text(page)
    console.print(f"wrote {output} ({len(page) / 1e6:.1f} MB, {len(results)} scenario(s))")


@trace_app.command("convert")
@_guard
def trace_convert(
    source: Annotated[str, typer.Argument(help="trace name or file (see simulate --trace)")],
    dest: Annotated[Path, typer.Argument(help="output .csv or .parquet, canonical format")],
    data_dir: DataOpt = None,
    fmt: FormatOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Convert a supported trace into the canonical format (docs/traces.md)."""
    if dest.suffix not in (".csv", ".parquet"):
        _fail(f"{dest}: the output must end in .csv or .parquet")
    loaded = _load_trace(source, data_dir, seed, fmt)
    write_canonical(loaded, dest)
    console.print(f"wrote {loaded.n_jobs} jobs to {dest}")


@trace_app.command("info")
@_guard
def trace_info(
    source: Annotated[str, typer.Argument(help="trace name or file")],
    fleet: FleetOpt = "philly",
    data_dir: DataOpt = None,
    fmt: FormatOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Jobs, span, GPU-hours and offered load of a trace on a fleet."""
    from kraft.sim.workload import offered_load

    loaded = _load_trace(source, data_dir, seed, fmt)
    fleet_spec = load_fleet(fleet)
    t = loaded.table
    span_days = (t["submit_s"][-1].as_py() - t["submit_s"][0].as_py()) / 86400
    import pyarrow.compute as pc

    gpu_h = pc.sum(pc.multiply(t["gpus"].cast("double"), t["duration_s"])).as_py() / 3600
    console.print(f"{loaded.name}: {loaded.n_jobs} jobs over {span_days:.1f} days, "
                  f"{gpu_h:,.0f} GPU-hours, "
                  f"offered load {offered_load(loaded, fleet_spec.gpu_count):.3f} "
                  f"on {fleet_spec.name} ({fleet_spec.gpu_count} GPUs)", highlight=False)


from kraft.control.cli import register  # noqa: E402  (the live commands)
from kraft.reporting.cli import register as register_reports  # noqa: E402

register(app)
register_reports(report_app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
