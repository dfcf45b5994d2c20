"""The database: tenants, tokens, jobs, their attempts and event log, inference services, the
audit log.

SQLite by default (a file in the data directory), PostgreSQL with a postgresql:// URL; the
schema is created and upgraded by Alembic (migrations/). Every job state change is written here
before the service acts on it.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

FINAL = ("succeeded", "failed", "cancelled", "rejected")  # a job in one of these is over


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_s(t: float | None, timespec: str = "auto") -> str | None:
    """Epoch seconds as an ISO time in UTC (None stays None)."""
    return None if t is None else datetime.fromtimestamp(float(t), UTC).isoformat(
        timespec=timespec)


def as_utc(d: datetime) -> datetime:
    """A stored time in UTC, from either database: SQLite hands back naive datetimes (every
    time is written in UTC), PostgreSQL aware ones in the session's time zone."""
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    spec: Mapped[dict] = mapped_column(JSON)  # TenantSpec as JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(100), default="")  # what the operator calls it
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


_LIVE_CANCEL = text("cancel_requested AND state NOT IN "
                    "('succeeded', 'failed', 'cancelled', 'rejected')")


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key"),
                      Index("ix_jobs_cancel_live", "id", postgresql_where=_LIVE_CANCEL,
                            sqlite_where=_LIVE_CANCEL))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column(JSON)  # JobSpec as JSON
    state: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    placement: Mapped[list | None] = mapped_column(JSON, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    submitted_s: Mapped[float] = mapped_column(Float, default=0.0)
    # its place in line (epoch s), where the operator moved it (top); else submitted_s
    queue_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # An inference replica: its service, and whether the gateway is draining it to stop.
    service_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # the operator's


class JobRequestRow(Base):
    """An operator's hold, release or requeue of a job, carried out by the loop (`done_at`
    set then, with what came of it)."""

    __tablename__ = "job_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))  # hold | release | requeue
    reason: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(100), default="operator")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                     index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")


class AttemptRow(Base):
    """One start of a job: the live half of the one record (kraft.record). Written as the
    attempt starts (end_s null) and closed, with how it ended, in the transaction that moves
    the job out of `running`. Times are epoch seconds, as the loop's clock gives them."""

    __tablename__ = "attempts"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    site: Mapped[str] = mapped_column(String(100))
    pool: Mapped[str] = mapped_column(String(200))  # Pool.label: site/model x GPUs per node
    nodes: Mapped[list] = mapped_column(JSON)  # node names
    gpus: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float, index=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    ended: Mapped[str | None] = mapped_column(String(20), nullable=True)  # record.ENDINGS
    # the loop's lease epoch (kraft.control.leader) it started under; null on SQLite
    leader_epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class LeaseRow(Base):
    """Which `kraft serve` runs the scheduling loop on a shared database, and until when
    (the database's clock) unless it renews; `epoch` counts the leaders (kraft.control.leader)."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(200))  # host:pid
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GatewayLoadRow(Base):
    """What one API process's inference gateway holds of one service, published every
    refresh (kraft.infer.live): requests in flight per replica, requests queued for a ready
    replica, SLO outcomes over the autoscaler's window, and the draining replicas it has seen
    (so it routes to them no more). Other gateways add the in-flight counts to their own when
    they route; the scheduling loop's autoscaler sums them all."""

    __tablename__ = "gateway_load"
    gateway: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid
    service_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    in_flight: Mapped[dict] = mapped_column(JSON)  # replica job id (as text) -> requests
    draining_seen: Mapped[list] = mapped_column(JSON)  # replica job ids
    queued: Mapped[int] = mapped_column(Integer)
    met: Mapped[int] = mapped_column(Integer)  # finished requests that met the SLO, in window
    finished: Mapped[int] = mapped_column(Integer)
    at_s: Mapped[float] = mapped_column(Float)  # epoch s of the publishing host's clock


class ServiceRow(Base):
    """An InferenceService. The scheduling loop's autoscaler sets `desired_replicas` from
    what the gateways publish, and keeps that many replica jobs alive (kraft.infer.live)."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("tenant", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column(JSON)  # InferenceServiceSpec as JSON
    desired_replicas: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")


class NodeRow(Base):
    """A node taken out of placement by the operator: drained (no new work; with `evict`, its
    jobs were preempted) or down (its jobs requeued as failures). No row: the node is up."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # site/pod-nNNN
    state: Mapped[str] = mapped_column(String(20))  # "drain" | "down"
    reason: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(100), default="operator")
    evict: Mapped[bool] = mapped_column(Boolean, default=False)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a maintenance window (epoch s): out of placement from start to end, and before the start
    # for jobs that would not end first; the loop removes the row once it is over
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class QueueRow(Base):
    """A tenant's queue as the loop last saw it (`kraft queue`, `GET /v1/queue`): its
    waiting jobs in the order the policy takes them, and its fair-share standing. Written
    each second for the tenants whose queue changed."""

    __tablename__ = "queues"
    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    at_s: Mapped[float] = mapped_column(Float)  # epoch s of the snapshot
    value: Mapped[dict] = mapped_column(JSON)


class SettingRow(Base):
    """What `kraft serve` runs with, for the operator's commands on the host: `fleet` (the
    served fleet spec)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)


class AuditRow(Base):
    """Append-only: the service never updates or deletes a row here."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # "operator" or a tenant name
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # the operator's reason


def write_lock(engine: Engine):
    """SQLite takes one writer at a time and makes the others poll with growing sleeps (up to
    100 ms each); queueing writers on a lock in this process is far faster. PostgreSQL needs
    no lock."""
    lock = getattr(engine, "kraft_write_lock", None)
    return lock if lock is not None else contextlib.nullcontext()


def private_state(data_dir: Path) -> None:
    """Kraft's state is the service account's alone, whatever the umask: every file it makes
    from here is 0600 and every folder 0700 (os.umask), and what is already there is put
    right. The data folder itself is 0711: tenants' work directories may sit below it."""
    import os

    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711)
    for p in data_dir.iterdir():
        if p.name == "homes":  # tenants' own folders (kraft.exec.identity.work_dir)
            continue
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o700)
        elif p.is_file():
            p.chmod(0o600)


def database_url(data_dir: Path, db: str | None) -> str:
    if db:
        return db
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'kraft.db'}"


def make_engine(url: str) -> Engine:
    """An engine for SQLite or PostgreSQL (psycopg 3); any other URL is a ValueError."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):
            # WAL + synchronous=NORMAL: a commit survives the service being killed (the
            # crash-safety promise); only an OS crash or power loss can drop the last
            # commits. For that, run on PostgreSQL.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against a killed process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        engine.kraft_write_lock = threading.Lock()
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("postgresql+psycopg://"):
        raise ValueError("Kraft keeps its state in PostgreSQL (postgresql://…) or SQLite "
                         "(sqlite:///…, the default, in --data-dir)")
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


MIGRATE_LOCK = 0x6B72616674  # "kraft": the advisory lock migrations take on PostgreSQL


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # instances starting together: one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
