"""The HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Tenant endpoints under /v1 see and touch only the caller's own jobs: another tenant's job is a
404, as if it did not exist. Operator endpoints under /admin take the operator token only.
Every action is appended to the audit log with who, what, when and from which address.
"""


import logging
import threading
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from kraft.control.auth import hash_token, is_operator, new_token
from kraft.control.dashboard import add_dashboard
from kraft.control.guard import BodyGuard
from kraft.control.health import add_health_routes
from kraft.control.intake import WAITING, Intake, Submission
from kraft.control.metrics import FleetCollector, render
from kraft.control.nodes_api import add_node_routes
from kraft.control.operator_api import add_operator_routes
from kraft.control.params import Id, State
from kraft.control.service import run_loop
from kraft.control.store import (
    FINAL,
    AuditRow,
    EventRow,
    JobRow,
    QueueRow,
    TenantRow,
    TokenRow,
    as_utc,
    iso_s,
    sessions,
    utcnow,
    write_lock,
)
from kraft.control.usage import LiveBooks, parse_time
from kraft.control.usage_api import add_usage_routes
from kraft.exec.base import read_log
from kraft.infer.api import add_inference_routes
from kraft.infer.live import Gateway
from kraft.spec.load import explain
from kraft.spec.models import FleetSpec, JobFields, JobSpec, TenantSpec

log = logging.getLogger("kraft.api")
LOG_CHUNK = 1 << 20  # bytes of log per request
Limit = Annotated[int, Query(ge=1, le=10_000)]


class JobOut(BaseModel):
    id: int
    name: str
    tenant: str
    state: str
    reason: str
    gpus: int
    attempt: int
    exit_code: int | None
    placement: list | None
    submitted_at: str
    started_at: str | None
    finished_at: str | None


class EventOut(BaseModel):
    at: str
    from_state: str
    to_state: str
    detail: str


class TenantCreated(BaseModel):
    tenant: str
    token: str = Field(description="shown once; stored only as a hash")
    token_id: int


class Submit(JobFields):
    """A job as a tenant submits it: the job spec's fields (kraft.spec.models.JobFields). The
    tenant is the token's, never the body's; a live job must say what to run."""

    gpus: int = Field(ge=1, le=100_000)
    command: list[str] = Field(min_length=1, max_length=1000)

    def spec(self, tenant: str) -> JobSpec:
        return JobSpec(tenant=tenant, **self.model_dump())


def _iso(d: datetime | None) -> str | None:
    return as_utc(d).isoformat() if d is not None else None


def _out(row: JobRow) -> JobOut:
    return JobOut(id=row.id, name=row.name, tenant=row.tenant, state=row.state,
                  reason=row.reason, gpus=row.spec["gpus"], attempt=row.attempt,
                  exit_code=row.exit_code, placement=row.placement,
                  submitted_at=_iso(row.submitted_at), started_at=_iso(row.started_at),
                  finished_at=_iso(row.finished_at))


def create_app(engine, data_dir: Path, plane=None, tick_s: float = 0.05,
               fleet: FleetSpec | None = None, garbage=None,
               runs_dir: Path | None = None) -> FastAPI:
    """`plane`: the ControlPlane whose loop runs in a background thread while serving (None:
    the loop runs elsewhere, e.g. in its own process; see `kraft.control.service`). `fleet`
    (default: the plane's) lets the inference gateway map replicas to sites. `garbage`: the
    loop's garbage collection (kraft.control.service `Garbage`), for the service's own
    process, not a test's. `runs_dir`: where jobs' logs are (default DATA_DIR/runs)."""
    Session = sessions(engine)
    runs_dir = runs_dir or data_dir / "runs"
    intake = Intake(engine)  # submissions, by group commit
    stop = threading.Event()
    fleet = fleet or (plane.cluster.fleet if plane is not None else None)
    gateway = Gateway(engine, fleet) if fleet is not None else None


    loop: list[threading.Thread] = []  # this process's loop thread, where it has one

    @asynccontextmanager
    async def lifespan(_app):
        thread = None
        if plane is not None:
            plane.recover(time.time())
            thread = threading.Thread(target=run_loop, args=(plane, stop, tick_s, garbage),
                                      name="kraft-loop", daemon=True)
            thread.start()
            loop.append(thread)
        if gateway is not None:
            await gateway.start()
        yield
        if gateway is not None:
            await gateway.close()
        await intake.close()
        stop.set()
        if thread is not None:
            thread.join(timeout=5)

    app = FastAPI(title="Kraft", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodyGuard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, naming the allowed fields beside an unknown one. The input is not
        echoed back (it may be megabytes, or hold what JSON cannot carry)."""
        body = getattr(getattr(request.scope.get("route"), "body_field", None), "field_info",
                       None)
        model = getattr(body, "annotation", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            model = None
        errors = [{"loc": [str(x)[:100] if not isinstance(x, int) else x for x in e["loc"]],
                   "msg": (explain({**e, "loc": e["loc"][1:]}, model)
                           if e["type"] == "extra_forbidden" and e["loc"][:1] == ("body",)
                           else str(e["msg"]))[:500],
                   "type": e["type"]} for e in exc.errors()[:20]]
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})

    def audit(s, actor: str, action: str, target: str, request: Request) -> None:
        address = request.client.host if request.client else ""
        s.add(AuditRow(actor=actor, action=action, target=target, address=address))

    def bearer(authorization: str | None) -> str:
        """The token of `Authorization: Bearer <token>`, exactly: one space, no other."""
        token = (authorization or "").removeprefix("Bearer ")
        if (not authorization or token == authorization or not token
                or token != token.strip() or " " in token or len(token) > 200):
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return token

    tokens = TokenRow.__table__

    async def tenant(authorization: Annotated[str | None, Header()] = None) -> str:
        # async with short blocking queries: no thread hand-off per request
        token = bearer(authorization)
        with engine.connect() as conn:
            row = conn.execute(select(tokens.c.tenant, tokens.c.revoked, tokens.c.expires_at)
                               .where(tokens.c.token_hash == hash_token(token))).first()
        if row is None or row.revoked:
            raise HTTPException(401, "invalid or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
            raise HTTPException(401, "expired token: ask the operator for a new one "
                                     "(kraft admin tenant token)",
                                headers={"WWW-Authenticate": "Bearer"})
        return row.tenant

    def operator(authorization: Annotated[str | None, Header()] = None) -> str:
        if not is_operator(data_dir, bearer(authorization)):
            raise HTTPException(401, "operator token required")
        return "operator"

    def own(s, job_id: int, name: str) -> JobRow:
        row = s.get(JobRow, job_id)
        if row is None or row.tenant != name:
            raise HTTPException(404, f"no job {job_id}")
        return row

    Tenant = Annotated[str, Depends(tenant)]
    Operator = Annotated[str, Depends(operator)]

    async def bearer_hash(authorization: Annotated[str | None, Header()] = None) -> str:
        return hash_token(bearer(authorization))

    @app.post("/v1/jobs", status_code=201, response_model=JobOut,
              responses={401: {"description": "missing, invalid or revoked token"},
                         503: {"description": "the database is unavailable: retry"}})
    async def submit(body: Submit, request: Request, response: Response,
                     token_hash: Annotated[str, Depends(bearer_hash)],
                     idempotency_key: Annotated[str | None, Header(max_length=200)] = None
                     ) -> JobOut:
        """Submit a job. A retry with the same Idempotency-Key returns the first job (200)."""
        spec = body.spec("-").model_dump(mode="json")  # the tenant is the token's
        try:
            result = await intake.submit(Submission(
                token_hash, idempotency_key or None, body.name, spec,
                request.client.host if request.client else ""))
        except DBAPIError:
            log.exception("submit: the database failed")
            raise HTTPException(503, "the database did not confirm the submit: retry with the "
                                "same Idempotency-Key (a retry never makes a second job)",
                                headers={"Retry-After": "1"}) from None
        if result.tenant is None:
            raise HTTPException(401, "invalid or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        if not result.created:
            with Session() as s:
                row = s.get(JobRow, result.job_id)
            if {**row.spec, "tenant": "-"} != spec:
                raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for "
                                         f"job {row.id} with another body: use a new key for "
                                         f"a new job")
            response.status_code = 200
            return _out(row)
        created = JobOut(id=result.job_id, name=body.name, tenant=result.tenant,
                         state="pending", reason=WAITING, gpus=body.gpus, attempt=0,
                         exit_code=None, placement=None,
                         submitted_at=_iso(result.submitted_at), started_at=None,
                         finished_at=None)
        # serialised here: returned as a model, FastAPI would validate it a second time
        return Response(created.model_dump_json(), status_code=201,
                        media_type="application/json")

    @app.get("/v1/jobs", response_model=list[JobOut])
    def jobs(who: Tenant, state: State | None = None,
             since: Annotated[str | None, Query(
                 max_length=40, description="ISO time: live jobs and those that ended since "
                                            "(default: all)")] = None,
             limit: Limit = 1000) -> list[JobOut]:
        """Your jobs, newest first."""
        try:
            ended_since = None if since is None else datetime.fromtimestamp(
                parse_time(since, 0.0), UTC)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        with Session() as s:
            q = select(JobRow).where(JobRow.tenant == who)
            if state:
                q = q.where(JobRow.state == state)
            if ended_since is not None:
                q = q.where(JobRow.state.not_in(FINAL) | (JobRow.finished_at >= ended_since))
            return [_out(r) for r in s.scalars(q.order_by(JobRow.id.desc()).limit(limit))]

    @app.get("/v1/queue")
    def queue(who: Tenant) -> dict:
        """Your waiting jobs in the order the scheduler will take them (the position counts
        every tenant's jobs ahead), the head job's expected start, and your fair-share
        standing: your share of the weights against your share of the decayed usage."""
        with Session() as s:
            row = s.get(QueueRow, who)
        if row is None:
            return {"tenant": who, "as_of": None, "jobs": []}
        value = dict(row.value)
        for j in value["jobs"]:
            j["submitted"] = iso_s(j.pop("submitted_s"), "seconds")
            j["expected_start"] = iso_s(j.pop("expected_start_s"), "seconds")
        return {"tenant": who, "as_of": iso_s(row.at_s, "seconds"), **value}

    @app.get("/v1/jobs/{job_id}", response_model=JobOut)
    def job(job_id: Id, who: Tenant) -> JobOut:
        with Session() as s:
            return _out(own(s, job_id, who))

    @app.get("/v1/jobs/{job_id}/events", response_model=list[EventOut])
    def events(job_id: Id, who: Tenant) -> list[EventOut]:
        with Session() as s:
            own(s, job_id, who)
            rows = s.scalars(select(EventRow).where(EventRow.job_id == job_id)
                             .order_by(EventRow.id))
            return [EventOut(at=_iso(e.at), from_state=e.from_state, to_state=e.to_state,
                             detail=e.detail) for e in rows]

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202, response_model=JobOut)
    def cancel(job_id: Id, request: Request, who: Tenant) -> JobOut:
        with write_lock(engine), Session() as s:
            row = own(s, job_id, who)
            if row.state in ("succeeded", "failed", "cancelled", "rejected"):
                raise HTTPException(409, f"job {job_id} already ended ({row.state})")
            row.cancel_requested = True
            audit(s, who, "job.cancel", str(job_id), request)
            s.commit()
            return _out(row)

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def logs(job_id: Id, request: Request, who: Tenant,
             offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> Response:
        """The latest attempt's log from byte `offset`, as the job wrote it (bytes that are
        not UTF-8 included); X-Next-Offset says where to go on from."""
        with write_lock(engine), Session() as s:
            row = own(s, job_id, who)
            audit(s, who, "job.logs", str(job_id), request)
            s.commit()
        data = (read_log(runs_dir, job_id, row.attempt, offset, LOG_CHUNK)
                if row.attempt else b"")
        return Response(data, media_type="text/plain; charset=utf-8",
                        headers={"X-Next-Offset": str(offset + len(data))})

    @app.post("/admin/tenants", status_code=201, response_model=TenantCreated)
    def create_tenant(spec: TenantSpec, request: Request, who: Operator) -> TenantCreated:
        with write_lock(engine), Session() as s:
            if s.get(TenantRow, spec.name) is not None:
                raise HTTPException(409, f"tenant {spec.name!r} exists")
            created = add_tenant(s, spec)
            audit(s, who, "tenant.create", spec.name, request)
            s.commit()
            return created

    @app.post("/admin/tokens/{token_id}/revoke", status_code=204)
    def revoke(token_id: Id, request: Request, who: Operator) -> None:
        with write_lock(engine), Session() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise HTTPException(404, f"no token {token_id}")
            row.revoked = True
            audit(s, who, "token.revoke", str(token_id), request)
            s.commit()

    @app.get("/admin/audit")
    def audit_log(who: Operator, limit: Limit = 1000) -> list[dict]:
        with Session() as s:
            rows = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit))
            return [{"at": _iso(r.at), "actor": r.actor, "action": r.action,
                     "target": r.target, "address": r.address, "detail": r.detail}
                    for r in rows]

    collector = FleetCollector(fleet, Session) if fleet is not None else None

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(who: Operator) -> Response:
        """Prometheus exposition: fleet, queue, power and carbon gauges and the
        scheduling-cycle histogram (operator token: scrape with a bearer credential)."""
        return Response(render(collector), media_type=CONTENT_TYPE_LATEST)

    live_books = LiveBooks(fleet) if fleet is not None else None
    add_operator_routes(app, engine, Session, Operator, _out, State)
    add_node_routes(app, engine, Session, Operator,
                    live_books.cluster if live_books is not None else None)
    add_usage_routes(app, Session, Tenant, Operator, own, live_books)
    add_dashboard(app, Session, Operator, collector,
                  live_books.cluster if live_books is not None else None)
    add_inference_routes(app, engine, Tenant, audit, gateway)
    add_health_routes(app, engine, Session,
                      (lambda: bool(loop) and loop[0].is_alive()) if plane is not None else None)
    return app


def add_tenant(s, spec: TenantSpec) -> TenantCreated:
    """Create a tenant and its first token (the caller commits)."""
    s.add(TenantRow(name=spec.name, spec=spec.model_dump(mode="json")))
    token = new_token()
    row = TokenRow(tenant=spec.name, token_hash=hash_token(token))
    s.add(row)
    s.flush()
    return TenantCreated(tenant=spec.name, token=token, token_id=row.id)
