"""Submissions by group commit: concurrent submits share one database transaction.

A submit is accepted only once its job, its first event and its audit row are committed; the
HTTP answer waits for that commit. Committing each submit on its own costs ~8 database round
trips on the event loop (token check, BEGIN, three INSERTs, COMMIT, pool pings), and each
round trip gives the GIL to the scheduling thread for up to its 5 ms switch interval. Here
one writer thread takes every submit that arrived while the previous batch was committing and
writes them together: one token query, one idempotency query, three multi-row INSERTs, one
commit. The token is checked inside the same transaction, so a revoked token is refused at
once, and an idempotency key already on record answers with the first job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from kraft.control.store import AuditRow, EventRow, JobRow, TokenRow, utcnow, write_lock

MAX_BATCH = 512  # submits per transaction; bounds one commit's size and latency
WAITING = "waiting: accepted, not yet seen by the scheduler"


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


class Intake:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.queue: asyncio.Queue[Submission] | None = None
        self.task: asyncio.Task | None = None

    async def submit(self, item: Submission) -> Accepted:
        if self.task is None:  # started lazily, on the serving event loop
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._writer())
        item.done = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(item)
        return await item.done

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _writer(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                results = await asyncio.to_thread(self.write, batch)
            except Exception as e:  # the database failed: every submit in the batch is refused
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(e)
                continue
            for item, result in zip(batch, results):
                if not item.done.done():  # the client may have gone away
                    item.done.set_result(result)

    def write(self, batch: list[Submission]) -> list[Accepted]:
        try:
            return self._write(batch)
        except IntegrityError:
            # Only another process writing the same idempotency key can get here (keys within
            # one batch are merged): redo one by one, each finding the winner's row.
            return [self._write([item])[0] for item in batch]

    def _write(self, batch: list[Submission]) -> list[Accepted]:
        tokens, jobs = TokenRow.__table__, JobRow.__table__
        with write_lock(self.engine), self.engine.begin() as conn:
            hashes = {item.token_hash for item in batch}
            tenant_of = dict(conn.execute(
                select(tokens.c.token_hash, tokens.c.tenant)
                .where(tokens.c.token_hash.in_(hashes), tokens.c.revoked.is_(False))).all())
            keys = {(tenant_of[i.token_hash], i.idempotency_key) for i in batch
                    if i.idempotency_key and i.token_hash in tenant_of}
            known: dict[tuple[str, str], int] = {}
            if keys:
                known = {(t, k): job_id for t, k, job_id in conn.execute(
                    select(jobs.c.tenant, jobs.c.idempotency_key, jobs.c.id)
                    .where(tuple_(jobs.c.tenant, jobs.c.idempotency_key).in_(keys))).all()}
            now, now_s = utcnow(), time.time()
            # Per submit: an Accepted, or (created, i) for the i-th new row; a retry of a key
            # first seen in this same batch is (False, i): the first one's job, answered 200.
            results: list[Accepted | tuple[bool, int]] = []
            rows: list[dict] = []
            addresses: list[str] = []
            row_of_key: dict[tuple[str, str], int] = {}
            for item in batch:
                tenant = tenant_of.get(item.token_hash)
                key = (tenant, item.idempotency_key)
                if tenant is None:
                    results.append(Accepted(None))
                elif item.idempotency_key and key in known:
                    results.append(Accepted(tenant, known[key]))
                elif item.idempotency_key and key in row_of_key:
                    results.append((False, row_of_key[key]))
                else:
                    if item.idempotency_key:
                        row_of_key[key] = len(rows)
                    results.append((True, len(rows)))
                    addresses.append(item.address)
                    rows.append(dict(
                        tenant=tenant, idempotency_key=item.idempotency_key, name=item.name,
                        spec={**item.spec, "tenant": tenant}, state="pending", reason=WAITING,
                        attempt=0, cancel_requested=False, submitted_at=now,
                        submitted_s=now_s))
            ids: list[int] = []
            if rows:
                ids = conn.execute(
                    insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), rows,
                ).scalars().all()
                conn.execute(insert(EventRow.__table__), [
                    dict(job_id=i, at=now, from_state="", to_state="pending", detail="submitted")
                    for i in ids])
                conn.execute(insert(AuditRow.__table__), [
                    dict(at=now, actor=r["tenant"], action="job.submit", target=str(i),
                         address=address) for r, i, address in zip(rows, ids, addresses)])
        return [r if isinstance(r, Accepted)
                else Accepted(rows[r[1]]["tenant"], ids[r[1]], r[0], now) for r in results]
