"""`kraft serve`, `kraft admin …` (the operator, on the host) and the tenant commands
(`kraft submit`, `jobs`, `job`, `cancel`, `logs`) that talk to the API over HTTP."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kraft.cli_shared import DepthOpt, ParamOpt, PolicyOpt, PreferOpt, ShiftOpt
from kraft.cliapp import command_group

# Piped to a file or grep, lines are wide enough that no table cell is cut.
console = Console(width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True)
log = logging.getLogger("kraft.serve")
admin_app = command_group("Operator commands, run on the control-plane host.")
tenant_app = command_group("Tenants and their tokens.")
admin_app.add_typer(tenant_app, name="tenant")

DataDir = Annotated[Path, typer.Option(envvar="KRAFT_HOME", help="state folder (SQLite, logs)")]
Db = Annotated[Optional[str], typer.Option(envvar="KRAFT_DB",
                                           help="postgresql://… (default: SQLite in --data-dir)")]
DbFile = Annotated[Optional[Path], typer.Option(help="a file holding the database URL (with "
                                                     "its password), instead of --db")]
DEFAULT_HOME = Path("kraft-data")


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _engine(data_dir: Path, db: str | None, db_file: Path | None = None,
            one_instance: bool = False):
    """The database, migrated to the newest schema; one that cannot be used is a clear
    error (which, and why), not a traceback. `one_instance` (`kraft serve`): a SQLite file is
    locked to this process first, or refused if another instance holds it
    (kraft.control.leader). A password is never taken from the command line
    (every account on the host can read it there, in the process list): KRAFT_DB, --db-file
    or a ~/.pgpass give it."""
    import sys

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from kraft.control.store import database_url, make_engine, migrate, private_state

    private_state(data_dir)
    if db_file is not None:
        try:
            db = db_file.read_text().strip()
        except OSError as e:
            _fail(f"--db-file {db_file}: {e.strerror}")
    url = database_url(data_dir, db)
    try:
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
    except ArgumentError:
        _fail("--db: not a database URL (postgresql://user@host:port/db)")
    if parsed.password and any(parsed.password in a for a in sys.argv[1:]):
        _fail("--db: a password on the command line is visible to every account on this "
              "host (the process list); give the URL in KRAFT_DB or --db-file, or the "
              "password in ~/.pgpass")
    try:
        engine = make_engine(url)
        if one_instance and engine.dialect.name == "sqlite":
            from kraft.control.leader import InstanceLocked, lock_sqlite

            try:  # held as long as the engine: closing the file releases it
                engine.kraft_instance_lock = lock_sqlite(Path(engine.url.database))
            except InstanceLocked as e:
                _fail(str(e))
        migrate(engine)
    except ValueError as e:  # not a database Kraft keeps its state in
        _fail(f"--db {shown}: {e}")
    except DBAPIError as e:
        _fail(f"cannot use the database {shown}: {str(e.orig).strip()}")
    return engine


def serve(
    fleet: Annotated[str, typer.Option(help="bundled fleet name or YAML")] = "local",
    tenants: Annotated[Optional[str], typer.Option(help="tenants YAML to load (no tokens)")] = None,
    policy: PolicyOpt = "backfill",
    param: ParamOpt = None,
    scan_depth: DepthOpt = 100,
    shift: ShiftOpt = None,
    prefer: PreferOpt = None,
    forecast: Annotated[str, typer.Option(
        help="what shifting plans with: recent-days[-N] (the same hour over the last N days, "
             "default 7); a replay's oracle is not for a live service")] = "recent-days",
    data_dir: DataDir = DEFAULT_HOME,
    db: Db = None,
    db_file: DbFile = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    work_dir: Annotated[Optional[Path], typer.Option(
        help="tenants' work directories (default: DATA_DIR/homes)")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option(
        help="the local engine's folder of job logs and exit statuses (default: "
             "DATA_DIR/runs); instances of one database on one host give the same one, so "
             "that a standby re-adopts the leader's running jobs")] = None,
    grace_s: Annotated[float, typer.Option(
        min=0, max=3600, help="cancel, time limit, preemption: SIGTERM, then this long "
                              "(a checkpoint's time), then SIGKILL")] = 30.0,
    single_user: Annotated[bool, typer.Option(
        help="run every tenant's jobs as this service's own account (one person, one "
             "host); without it, a service that is not root runs one tenant's jobs only")] = False,
    sandbox: Annotated[bool, typer.Option(
        help="confine jobs with bubblewrap where it is installed (root)")] = True,
) -> None:
    """Run the API and the scheduling loop."""
    import shutil

    from kraft.cli_shared import scheduling_options
    from kraft.control.store import private_state
    from kraft.exec.identity import Isolation
    from kraft.spec.load import SpecError, load_fleet, load_tenants

    try:  # checked before anything is touched (state folder, umask, environment)
        if forecast == "oracle":
            raise ValueError("--forecast oracle reads the recorded series as if it were the "
                             "future: a replay's perfect forecast, not a live one; use "
                             "recent-days[-N]")
        scheduling = scheduling_options(policy, param, scan_depth, shift, prefer, forecast)
        fleet_spec = load_fleet(fleet)
        tenant_specs = load_tenants(tenants).tenants if tenants else []
    except (SpecError, ValueError) as e:
        _fail(str(e))
    from kraft.control.service import log_to_stderr

    log_to_stderr()
    private_state(data_dir)
    engine = _engine(data_dir, db, db_file, one_instance=True)  # before anything is touched
    # Metrics shared by the API and loop processes (prometheus_client multiprocess mode):
    # set before prometheus_client is first imported, emptied at each start.
    metrics_dir = data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    isolation = Isolation.detect((work_dir or data_dir / "homes").absolute(), single_user,
                                 sandbox)
    if not isolation.accounts and not single_user:
        err.print("[bold yellow]warning:[/] not root: jobs cannot run as their tenants' own "
                  "accounts, so only the first tenant's jobs will run (others are rejected "
                  "and told why); --single-user runs every tenant's jobs as this account",
                  highlight=False)
    console.print(f"isolation: {escape(isolation.describe())}", highlight=False, soft_wrap=True)
    options = dict(isolation=isolation, grace_s=grace_s, single_user=single_user)
    runs_dir = (runs_dir or data_dir / "runs").absolute()

    from kraft.control.api import create_app
    from kraft.control.auth import ensure_operator_token
    from kraft.control.nodes import remember_fleet
    from kraft.control.service import ControlPlane, Garbage
    from kraft.control.store import TenantRow, sessions

    with sessions(engine)() as s:
        for spec in tenant_specs:
            if s.get(TenantRow, spec.name) is None:
                s.add(TenantRow(name=spec.name, spec=spec.model_dump(mode="json")))
        remember_fleet(s, fleet_spec)  # for the operator's commands (kraft nodes, usage)
        s.commit()
    token = ensure_operator_token(data_dir)
    if token:
        console.print(f"operator token (shown once, stored hashed): [bold]{token}[/]",
                      soft_wrap=True)
    try:
        plane = ControlPlane(fleet_spec, engine, runs_dir, scheduling, **options)
    except ValueError as e:
        _fail(str(e))
    if engine.dialect.name == "sqlite":  # one writer per file: the loop is a thread here
        _serve_http(create_app(engine, data_dir, plane, garbage=Garbage, runs_dir=runs_dir),
                    host, port)
        return
    # PostgreSQL: the loop in its own process, the API in this one (each with its own GIL)
    import multiprocessing
    import signal
    import threading

    from kraft.control.leader import LOST_EXIT
    from kraft.control.service import loop_process

    del plane  # built above only to check the fleet's executors before serving
    args = (fleet_spec.model_dump(mode="json", by_alias=True), engine.url.render_as_string(
        hide_password=False), str(runs_dir), scheduling.as_dict(), os.getpid(),
        {**options, "isolation": {**vars(isolation), "work_root": str(isolation.work_root)}})
    spawn = multiprocessing.get_context("spawn")
    loop = [spawn.Process(target=loop_process, name="kraft-loop", daemon=True, args=args)]
    loop[0].start()
    stopping = threading.Event()

    def watch():  # a service whose loop died must not go on accepting work: stop serving
        while True:
            loop[0].join()
            if stopping.is_set():
                return
            if loop[0].exitcode != LOST_EXIT:
                err.print(f"[bold red]error:[/] the scheduling loop exited "
                          f"({loop[0].exitcode}); stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            # it lost its lease (paused, or cut off from the database): a fresh loop process
            # stands by, with nothing of the old one's memory
            loop[0] = spawn.Process(target=loop_process, name="kraft-loop", daemon=True,
                                    args=args)
            loop[0].start()

    def hand_over():  # SIGTERM: the loop stops and hands its lease on while the API drains
        stopping.set()
        loop[0].terminate()

    threading.Thread(target=watch, daemon=True).start()
    try:
        _serve_http(create_app(engine, data_dir, fleet=fleet_spec, runs_dir=runs_dir), host,
                    port, on_exit=hand_over)
    finally:
        hand_over()
        loop[0].join(timeout=10)


def _serve_http(app, host: str, port: int, on_exit=None) -> None:
    """uvicorn, once every object made so far (modules, the app, the fleet) is moved out of
    the garbage collector's reach: they live as long as the process, and under load a full
    collection that scanned them (~170,000 objects, 80-100 ms) ran about once a second and
    stalled every request in flight (p99 100 ms at p50 17 ms).

    An idle connection is kept 75 s, longer than clients keep theirs (httpx 5 s, requests and
    browsers more): the client closes first. At uvicorn's own 5 s the server closed a
    connection just as a busy client sent its next request on it, which reset it (seen as
    httpx.ReadError under load).

    `on_exit`: called at once on SIGTERM or SIGINT, before uvicorn's graceful stop (which
    answers the requests in flight first)."""
    import gc

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:  # bound: say where (a port taken ends the start instead)
                log.info("listening on http://%s:%d (API, /healthz, /readyz)", host, port)

        def handle_exit(self, sig, frame):
            if on_exit is not None:
                on_exit()
            super().handle_exit(sig, frame)

    gc.freeze()
    Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                          timeout_keep_alive=75)).run()


@tenant_app.command("create")
def tenant_create(
    name: str,
    tier: Annotated[str, typer.Option(help="reserved, on-demand or spot")] = "on-demand",
    reserved_gpus: int = 0,
    quota_gpus: Optional[int] = None,
    weight: float = 1.0,
    jurisdictions: Annotated[Optional[str], typer.Option(help="comma-separated, e.g. EEA")] = None,
    countries: Annotated[Optional[str], typer.Option(help="comma-separated, e.g. NO,SE")] = None,
    user: Annotated[Optional[str], typer.Option(
        help="Unix account its jobs run as (default kraft-NAME, made by a root service)")] = None,
    group: Annotated[Optional[str], typer.Option(help="its jobs' group (default: the "
                                                      "account's own)")] = None,
    path: Annotated[Optional[list[str]], typer.Option(
        help="a host path its sandboxed jobs may use (repeat for more)")] = None,
    data_dir: DataDir = DEFAULT_HOME,
    db: Db = None,
    db_file: DbFile = None,
) -> None:
    """Create a tenant; prints its API token once."""
    from pydantic import ValidationError

    from kraft.control.api import add_tenant
    from kraft.control.store import AuditRow, TenantRow, sessions
    from kraft.spec.load import format_validation_error
    from kraft.spec.models import TenantSpec

    try:
        spec = TenantSpec(name=name, tier=tier, reserved_gpus=reserved_gpus,
                          quota_gpus=quota_gpus, weight=weight,
                          residency={"jurisdictions": jurisdictions.split(",")
                                     if jurisdictions else [],
                                     "countries": countries.split(",") if countries else []},
                          user=user, group=group, paths=path or [])
    except ValidationError as e:
        _fail(format_validation_error("tenant", e))
    with sessions(_engine(data_dir, db, db_file))() as s:
        if (old := s.get(TenantRow, name)) is not None:
            _fail(f"tenant {name!r} exists" + (" (deleted; its record stays: choose another "
                                               "name)" if old.deleted_at else
                                               "; kraft admin tenant token gives it a new token"))
        created = add_tenant(s, spec)
        s.add(AuditRow(actor="operator", action="tenant.create", target=name, address="local"))
        s.commit()
    console.print(f"tenant {name} created; token id {created.token_id}")
    console.print(f"token (shown once, stored hashed): [bold]{created.token}[/]", soft_wrap=True)


@tenant_app.command("list")
def tenant_list(data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None
                ) -> None:
    from sqlalchemy import select

    from kraft.control.store import TenantRow, TokenRow, sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        table = Table("tenant", "tier", "reserved", "quota", "tokens (id, revoked)")
        for t in s.scalars(select(TenantRow).order_by(TenantRow.name)):
            toks = s.scalars(select(TokenRow).where(TokenRow.tenant == t.name))
            table.add_row(Text(t.name), t.spec["tier"], str(t.spec["reserved_gpus"]),
                          str(t.spec["quota_gpus"]),
                          ", ".join(f"{k.id}{' revoked' if k.revoked else ''}" for k in toks))
        console.print(table)


@tenant_app.command("revoke")
def token_revoke(token_id: int, data_dir: DataDir = DEFAULT_HOME, db: Db = None,
                 db_file: DbFile = None) -> None:
    """Revoke a token: it stops working at once."""
    from kraft.control.store import AuditRow, TokenRow, sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            _fail(f"no token {token_id}")
        row.revoked = True
        s.add(AuditRow(actor="operator", action="token.revoke", target=str(token_id),
                       address="local"))
        s.commit()
    console.print(f"token {token_id} revoked")


@admin_app.command("audit")
def audit(data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None,
          limit: int = 50) -> None:
    """The append-only audit log, newest first."""
    from sqlalchemy import select

    from kraft.control.store import AuditRow, as_utc, sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        table = Table("at (UTC)", "actor", "action", "target", "address")
        for r in s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)):
            table.add_row(as_utc(r.at).strftime("%Y-%m-%d %H:%M:%S"), Text(r.actor),
                          Text(r.action), Text(r.target), Text(r.address))
        console.print(table)


# ---- tenant commands over HTTP ------------------------------------------------------------

@contextmanager
def _client():
    """An HTTP client for the tenant commands; a server that cannot be reached is a clear
    error, not a traceback."""
    import httpx

    server = os.environ.get("KRAFT_SERVER", "http://127.0.0.1:8080")
    token = os.environ.get("KRAFT_TOKEN")
    if not token:
        _fail("set KRAFT_TOKEN to your tenant's API token (and KRAFT_SERVER if not local)")
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as c:
        try:
            yield c
        except httpx.TransportError as e:
            _fail(f"cannot reach the Kraft server at {server} ({e or type(e).__name__}); "
                  "is `kraft serve` running there? KRAFT_SERVER names it")


def _check(resp, source: Path | None = None):
    """The response, or a clear error with the server's reason (and the spec file it was
    about: each field named, with what is allowed)."""
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        if isinstance(detail, list):  # validation errors: field and reason each
            detail = "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in detail)
        _fail(f"{source}: refused ({resp.status_code}): {detail}" if source
              else f"{resp.status_code}: {detail}")
    return resp


def _yaml_mapping(path: Path) -> dict:
    from kraft.spec.load import SpecError, read_mapping

    try:
        return read_mapping(path)
    except SpecError as e:
        _fail(str(e))


def submit(spec: Annotated[Path, typer.Argument(help="job YAML")]) -> None:
    """Submit a job (retries are safe: each submit carries an idempotency key)."""
    import httpx

    body = _yaml_mapping(spec)
    key = str(uuid.uuid4())
    with _client() as c:
        for attempt in range(3):  # network trouble or a 503: retry with the same key
            try:
                resp = c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
                if resp.status_code != 503 or attempt == 2:
                    break
            except httpx.TransportError:
                if attempt == 2:
                    raise
            time.sleep(1)
        job = _check(resp, spec).json()
    console.print(f"job {job['id']} {job['state']}")


def job(job_id: int) -> None:
    """One job, with the scheduler's reason, its events, and each attempt's books (GPU-hours,
    kWh, kgCO2e location- and market-based, cost)."""
    from kraft.control.usage_cli import attempts_table

    with _client() as c:
        j = _check(c.get(f"/v1/jobs/{job_id}")).json()
        events = _check(c.get(f"/v1/jobs/{job_id}/events")).json()
        tried = c.get(f"/v1/jobs/{job_id}/attempts")
    console.print_json(json.dumps(j))
    for e in events:
        console.print(Text(f"{e['at']}  {e['from_state'] or '-'} -> {e['to_state']}  "
                           f"{e['detail']}"), highlight=False)
    if tried.status_code == 200 and tried.json():
        console.print(attempts_table(tried.json()))
    elif tried.status_code != 200:
        err.print(Text(f"no books: {tried.json().get('detail', tried.text)}"))


def cancel(job_id: int) -> None:
    """Cancel a job."""
    with _client() as c:
        _check(c.post(f"/v1/jobs/{job_id}/cancel"))
    console.print(f"job {job_id}: cancel requested")


def logs(job_id: int, follow: Annotated[bool, typer.Option("-f", "--follow")] = False) -> None:
    """A job's output; -f follows it until the job ends."""
    import codecs

    offset = 0
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace")  # bytes as the job wrote
    with _client() as c:
        while True:
            data = _check(c.get(f"/v1/jobs/{job_id}/logs", params={"offset": offset})).content
            text = decode.decode(data)
            if data:
                print(text, end="", flush=True)
                offset += len(data)
            if not follow:
                return
            state = _check(c.get(f"/v1/jobs/{job_id}")).json()["state"]
            if state in ("succeeded", "failed", "cancelled", "rejected") and not text:
                return
            time.sleep(0.5)


service_app = command_group("Your inference services (OpenAI-compatible endpoint at "
                            "/v1/completions, 'model' = the service name).")


@service_app.command("create")
def service_create(spec: Annotated[Path, typer.Argument(help="InferenceService YAML")]) -> None:
    """Create a service; its replicas start as jobs running its command."""
    body = _yaml_mapping(spec)
    with _client() as c:
        svc = _check(c.post("/v1/services", json=body), spec).json()
    console.print(Text(f"service {svc['name']}: {svc['desired_replicas']} replica(s) "
                       f"starting"))


@service_app.command("list")
def service_list() -> None:
    """Your services and their replicas."""
    with _client() as c:
        rows = _check(c.get("/v1/services")).json()
    table = Table("service", "desired", "replicas (job: state, site, in flight)")
    for svc in rows:
        reps = ", ".join(f"{r['job_id']}: {'ready' if r['ready'] else r['state']}"
                         f"{' draining' if r['draining'] else ''}, {r['site'] or '-'}, "
                         f"{r['in_flight']}" for r in svc["replicas"])
        table.add_row(Text(svc["name"]), str(svc["desired_replicas"]), Text(reps or "-"))
    console.print(table)


@service_app.command("delete")
def service_delete(name: str) -> None:
    """Delete a service: its replicas drain, then stop."""
    with _client() as c:
        _check(c.delete(f"/v1/services/{name}"))
    console.print(Text(f"service {name}: deleted; replicas draining"))


def register(app: typer.Typer) -> None:
    from kraft.control.jobs_cli import jobs, queue
    from kraft.control.nodes_cli import node_app, nodes
    from kraft.control.operator_cli import admin_jobs, job_app
    from kraft.control.tenants_cli import register_tenant
    from kraft.control.usage_cli import register_admin, usage

    app.add_typer(service_app, name="service")
    app.command()(serve)
    register_admin(admin_app)
    register_tenant(tenant_app)
    admin_app.add_typer(node_app, name="node")
    admin_app.add_typer(job_app, name="job")
    admin_app.command("jobs")(admin_jobs)
    app.add_typer(admin_app, name="admin")
    for fn in (submit, job, cancel, logs, usage, nodes, queue):
        app.command()(fn)
    app.command("jobs")(jobs)
