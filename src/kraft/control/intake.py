"""Submissions by group commit: concurrent submits share one database transaction.

A submit is accepted only once its job, its first event and its audit row are committed; the
HTTP answer waits for that commit. Committing each submit on its own costs ~8 database round
trips (token check, BEGIN, three INSERTs, COMMIT, pool pings), and on a busy machine every
round trip waits for the database process and then for this one to be scheduled again. Here
one writer thread takes every submit that arrived while the previous batch was being written
and writes them together:
- PostgreSQL: one statement, one round trip, on a connection the writer keeps: it checks the
  tokens, draws the ids and inserts the jobs, events and audit rows (`PG_BATCH`);
- SQLite (in-process, no round trips): a token query, an idempotency query and three
  multi-row INSERTs in one transaction.
The token is checked in the same transaction as the insert, so a revoked token is refused at
once, and an idempotency key already on record answers with the first job.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, insert, or_, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from kraft.control.store import AuditRow, EventRow, JobRow, TokenRow, utcnow, write_lock

MAX_BATCH = 512  # submits per transaction; bounds one commit's size and latency
IDLE_CHECK_S = 1.0  # a connection quiet this long is checked before use
WAITING = "waiting: accepted, not yet seen by the scheduler"

# The ids are drawn first (a CTE naming nextval is evaluated once), so a job, its event and
# its audit row are matched by id. A revoked or unknown token finds no tenant and writes
# nothing. A key already on record (or earlier in the batch, from another token of the same
# tenant) is skipped by ON CONFLICT, so the unique index answers it whatever the planner's
# statistics say, and it comes back with a null id.
PG_BATCH = text("""
WITH given AS (
    SELECT * FROM unnest(CAST(:hashes AS text[]), CAST(:keys AS text[]),
                         CAST(:names AS text[]), CAST(:specs AS text[]),
                         CAST(:addresses AS text[]))
             WITH ORDINALITY AS g(token_hash, key, name, spec, address, n)
), new AS MATERIALIZED (  -- ids drawn in submission order
    SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id, *
    FROM (SELECT g.n, t.tenant, g.key, g.name, g.spec, g.address
          FROM given g JOIN tokens t ON t.token_hash = g.token_hash AND NOT t.revoked
               AND (t.expires_at IS NULL OR t.expires_at > now())
          ORDER BY g.n) AS valid
), job AS (
    INSERT INTO jobs (id, tenant, idempotency_key, name, spec, state, reason, attempt,
                      cancel_requested, submitted_at, submitted_s, draining)
    SELECT id, tenant, key, name,
           CAST(jsonb_set(CAST(spec AS jsonb), '{tenant}', to_jsonb(tenant)) AS json),
           'pending', :reason, 0, false, :now, :now_s, false
    FROM new ORDER BY n
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING id
), event AS (
    INSERT INTO events (job_id, at, from_state, to_state, detail)
    SELECT id, :now, '', 'pending', 'submitted' FROM job
), audit AS (
    INSERT INTO audit (at, actor, action, target, address)
    SELECT :now, tenant, 'job.submit', CAST(id AS text), address FROM new JOIN job USING (id)
)
SELECT new.tenant, job.id FROM given LEFT JOIN new USING (n) LEFT JOIN job USING (id)
ORDER BY given.n
""")


@dataclass
class Submission:
    token_hash: str
    idempotency_key: str | None
    name: str
    spec: dict  # JobSpec as JSON; its tenant is set from the token
    address: str
    done: asyncio.Future = field(repr=False, default=None)


@dataclass
class Accepted:
    """The outcome: `tenant is None` means the token was invalid or revoked; `created` is
    False when an idempotency key on record answered with the first job."""

    tenant: str | None
    job_id: int = 0
    created: bool = False
    submitted_at: datetime | None = None


def _settle(done: asyncio.Future, result: Accepted | Exception) -> None:
    """On the submitter's event loop."""
    if done.done():  # the client went away
        return
    if isinstance(result, Exception):
        done.set_exception(result)
    else:
        done.set_result(result)


class Intake:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.queue: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.conn: Connection | None = None  # PostgreSQL: the writer's own connection
        self.used_at = 0.0  # when it last answered (time.monotonic)

    async def submit(self, item: Submission) -> Accepted:
        if self.thread is None:  # started lazily, with the first submit
            self.thread = threading.Thread(target=self._writer, name="kraft-intake",
                                           daemon=True)
            self.thread.start()
        item.done = asyncio.get_running_loop().create_future()
        self.queue.put(item)
        return await item.done

    async def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)  # the writer finishes its batch, then stops
            await asyncio.to_thread(self.thread.join, 10)
            self.thread = None  # a later submit (the app started again) starts a new one
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _writer(self) -> None:
        """The writer thread. It takes the next batch as soon as one is written, without
        waiting for the busy event loop to schedule it; the loop is only handed the answers."""
        while (item := self.queue.get()) is not None:
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                results: list[Accepted | Exception] = self.write(batch)
            except Exception as e:  # the database failed: every submit in the batch is refused
                results = [e] * len(batch)
                if len(batch) > 1 and isinstance(e, DBAPIError) and not (
                        e.connection_invalidated or isinstance(e, OperationalError)):
                    # one submit the database would not take (a value the API let through):
                    # it alone is refused, its batch-mates are written one by one
                    results = [self._alone(item) for item in batch]
            for item, result in zip(batch, results):
                try:
                    item.done.get_loop().call_soon_threadsafe(_settle, item.done, result)
                except RuntimeError:  # its event loop has closed: nobody is waiting
                    pass

    def _alone(self, item: Submission) -> Accepted | Exception:
        try:
            return self.write([item])[0]
        except Exception as e:
            return e

    def write(self, batch: list[Submission]) -> list[Accepted]:
        """Write a batch; one Accepted per submit, in order."""
        # A retry within the batch (same token, same key) shares the first copy's row.
        first_of: dict[tuple[str, str], int] = {}
        unique: list[Submission] = []
        index: list[tuple[int, bool]] = []  # per submit: its row, and whether it came first
        for item in batch:
            merge = (item.token_hash, item.idempotency_key)
            if item.idempotency_key and merge in first_of:
                index.append((first_of[merge], False))
                continue
            if item.idempotency_key:
                first_of[merge] = len(unique)
            index.append((len(unique), True))
            unique.append(item)
        now = utcnow()
        if self.engine.dialect.name == "postgresql":
            written = self._write_pg(unique, now)
        else:
            try:
                written = self._write_sqlite(unique, now)
            except IntegrityError:
                # Only another process writing the same key can get here: redo one by one,
                # each then finding the winner's row.
                written = [self._write_sqlite([item], now)[0] for item in unique]
        out = []
        for row, first in index:
            tenant, job_id, created = written[row]
            out.append(Accepted(tenant, job_id, created and first, now) if tenant
                       else Accepted(None))
        return out

    # ---- PostgreSQL: one statement ----------------------------------------------------------

    def _connection(self) -> Connection:
        """The writer's connection, in autocommit: the one statement is its own transaction.
        After a quiet second it is checked first (as the pool's pre-ping would), so a
        database restart costs a reconnect, not a failed batch; under load, no check."""
        if self.conn is not None and time.monotonic() - self.used_at > IDLE_CHECK_S:
            try:
                self.conn.exec_driver_sql("SELECT 1")
            except DBAPIError:
                self._drop_connection()
        if self.conn is None:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None:
            self.conn.invalidate()
            self.conn.close()
            self.conn = None

    def _write_pg(self, items: list[Submission], now: datetime) -> list[tuple]:
        params = dict(
            hashes=[i.token_hash for i in items], keys=[i.idempotency_key for i in items],
            names=[i.name for i in items], specs=[json.dumps(i.spec) for i in items],
            addresses=[i.address for i in items], reason=WAITING, now=now,
            now_s=now.timestamp())
        try:
            rows = self._connection().execute(PG_BATCH, params).all()
        except DBAPIError:
            self._drop_connection()  # the next batch opens a new one
            raise
        self.used_at = time.monotonic()
        written = [(tenant, job_id, True) for tenant, job_id in rows]
        on_record = [(tenant, i.idempotency_key) for (tenant, job_id), i in zip(rows, items)
                     if tenant is not None and job_id is None]
        if on_record:  # retries of keys already written: answer with the first job
            first_job = self._on_record(self.conn, on_record)
            written = [(t, first_job[t, i.idempotency_key], False) if t and job_id is None
                       else (t, job_id, c) for (t, job_id, c), i in zip(written, items)]
        return written

    # ---- SQLite: in-process, one writer at a time ------------------------------------------

    def _write_sqlite(self, items: list[Submission], now: datetime) -> list[tuple]:
        tokens, jobs = TokenRow.__table__, JobRow.__table__
        with write_lock(self.engine), self.engine.begin() as conn:
            tenant_of = dict(conn.execute(
                select(tokens.c.token_hash, tokens.c.tenant)
                .where(tokens.c.token_hash.in_({i.token_hash for i in items}),
                       tokens.c.revoked.is_(False),
                       or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > utcnow())))
                .all())
            tenants = [tenant_of.get(i.token_hash) for i in items]
            keyed = [(t, i.idempotency_key) for t, i in zip(tenants, items)
                     if t and i.idempotency_key]
            known = self._on_record(conn, keyed) if keyed else {}
            written: list[tuple] = [(t, known.get((t, i.idempotency_key)), False)
                                    for t, i in zip(tenants, items)]
            fresh = [n for n, (t, job_id, _) in enumerate(written) if t and job_id is None]
            if not fresh:
                return written
            ids = conn.execute(
                insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True),
                [dict(tenant=tenants[n], idempotency_key=items[n].idempotency_key,
                      name=items[n].name, spec={**items[n].spec, "tenant": tenants[n]},
                      state="pending", reason=WAITING, attempt=0, cancel_requested=False,
                      submitted_at=now, submitted_s=now.timestamp()) for n in fresh],
            ).scalars().all()
            conn.execute(insert(EventRow.__table__), [
                dict(job_id=job_id, at=now, from_state="", to_state="pending",
                     detail="submitted") for job_id in ids])
            conn.execute(insert(AuditRow.__table__), [
                dict(at=now, actor=tenants[n], action="job.submit", target=str(job_id),
                     address=items[n].address) for n, job_id in zip(fresh, ids)])
            for n, job_id in zip(fresh, ids):
                written[n] = (tenants[n], job_id, True)
        return written

    @staticmethod
    def _on_record(conn, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The jobs already holding these (tenant, idempotency key) pairs."""
        jobs = JobRow.__table__
        keys_of: dict[str, set[str]] = {}
        for tenant, key in keys:
            keys_of.setdefault(tenant, set()).add(key)
        return {(t, k): job_id for t, k, job_id in conn.execute(
            select(jobs.c.tenant, jobs.c.idempotency_key, jobs.c.id).where(or_(*(
                and_(jobs.c.tenant == t, jobs.c.idempotency_key.in_(ks))
                for t, ks in keys_of.items())))).all()}
