"""The live body: drives the shared scheduler on the wall clock.

One loop, one writer of job states. Each step: take in new submissions, carry out cancel
requests, poll running jobs, run one scheduling cycle, carry out its decisions. Every state
change is committed to the database *before* the action it describes, so a crash at any point
leaves a record the next start can act on (docs/control.md, "Recovery").

States: pending (accepted by the API) -> admitted (the scheduler holds it) -> running ->
succeeded | failed | cancelled; running -> preempted -> admitted; pending -> rejected.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Engine

from kraft.cluster.state import ClusterState, Placement
from kraft.control.metrics import CYCLE
from kraft.control.store import (
    EventRow,
    JobRow,
    TenantRow,
    as_utc,
    sessions,
    utcnow,
    write_lock,
)
from kraft.exec.base import Executor, Rank, RunRequest
from kraft.exec.router import make_executor
from kraft.infer.live import reconcile_services
from kraft.sched.job import Job, TenantState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec

log = logging.getLogger("kraft.service")
FINAL = ("succeeded", "failed", "cancelled", "rejected")
DEFAULT_LIMIT_S = 7 * 86400  # planning horizon for jobs that give no time limit


class ControlPlane:
    def __init__(self, fleet: FleetSpec, engine: Engine, executor: Executor | Path,
                 policy: str = "backfill"):
        """`executor`: an executor, or a work folder to run each site on the engine its spec
        names (kraft.exec.router)."""
        self.engine = engine
        self.Session = sessions(engine)
        self.cluster = ClusterState(fleet)
        self.executor = (make_executor(self.cluster, executor) if isinstance(executor, Path)
                         else executor)
        self.node_index = {n: i for i, n in enumerate(self.cluster.node_name)}
        self.sched = Scheduler(self.cluster, [], make_policy(policy))
        self.jobs: dict[int, Job] = {}  # by database id, jobs the scheduler holds
        self.runs: dict[int, tuple[RunRequest, list[int]]] = {}  # running: request, handles
        self.gpus_used: dict[int, set[int]] = defaultdict(set)  # node -> GPU indices in use
        self.written_reason: dict[int, str] = {}  # last reason stored, per waiting job
        self.reasons_at = 0.0
        self.services_at = 0.0

    # ---- bookkeeping helpers ---------------------------------------------------------------

    def _tenant(self, session, name: str) -> TenantState | None:
        t = self.sched.tenants.get(name)
        if t is None:
            row = session.get(TenantRow, name)
            if row is None:
                return None
            t = TenantState(TenantSpec.model_validate(row.spec))
            self.sched.add_tenant(t)
        return t

    @staticmethod
    def _move(session, row: JobRow, to: str, detail: str = "") -> None:
        session.add(EventRow(job_id=row.id, from_state=row.state, to_state=to, detail=detail))
        row.state = to
        row.reason = detail or row.reason

    def _job(self, row: JobRow, tenant: TenantState) -> Job:
        spec = JobSpec.model_validate(row.spec)
        limit = spec.time_limit_s or DEFAULT_LIMIT_S
        return Job(row.id, tenant, spec.gpus, row.submitted_s, limit, name=row.name,
                   gpu_model=spec.gpu_model, time_limit_s=spec.time_limit_s,
                   checkpoint_interval_s=spec.checkpoint_interval_s,
                   restart_cost_s=spec.restart_cost_s, preemptible=spec.preemptible)

    def _ranks(self, placement: Placement) -> tuple[Rank, ...]:
        ranks = []
        for node, k in placement:
            used = self.gpus_used[node]
            size = self.cluster.pools[self.cluster.node_pool[node]].gpus_per_node
            picked = tuple(i for i in range(size) if i not in used)[:k]
            used.update(picked)
            ranks.append(Rank(self.cluster.node_name[node], picked))
        return tuple(ranks)

    def _free_gpus(self, job_id: int) -> None:
        run = self.runs.pop(job_id, None)
        if run is None:
            return
        req, _ = run
        for rank in req.ranks:
            self.gpus_used[self.node_index[rank.node]].difference_update(rank.gpus)

    @staticmethod
    def _request(row: JobRow) -> RunRequest:
        spec = JobSpec.model_validate(row.spec)
        ranks = tuple(Rank(r["node"], tuple(r["gpus"])) for r in row.placement or [])
        return RunRequest(row.id, row.attempt, tuple(spec.command or ()), ranks,
                          dict(spec.env))

    # ---- recovery --------------------------------------------------------------------------

    def recover(self, now: float) -> None:
        """Rebuild the scheduler from the database after a start or a crash.

        Waiting jobs go back to the queue. A running job is re-adopted if its processes are
        alive, finished if they left exit statuses, and requeued if they vanished. A job is
        never started twice: its processes are found by job id and attempt, even when the
        crash came before their pids were written down."""
        with write_lock(self.engine), self.Session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.state.not_in(FINAL))
                             .order_by(JobRow.id)).all()
            names = self.node_index
            for row in rows:
                tenant = self._tenant(s, row.tenant)
                if row.state in ("pending",):
                    continue  # ingest() takes it
                job = self._job(row, tenant)
                if row.state != "running":
                    self._admit(s, row, job, now, recovered=True)
                    continue
                req = self._request(row)
                handles = row.placement and [r.get("pid") for r in row.placement]
                if not handles or None in handles:
                    handles = self.executor.find(req)
                status = self.executor.status(req, handles or [])
                if status.running:
                    placement = tuple((names[r.node], len(r.gpus)) for r in req.ranks)
                    pool = self.cluster.pools[self.cluster.node_pool[placement[0][0]]]
                    self.sched.adopt(job, placement, pool, row.submitted_s if row.started_at
                                     is None else as_utc(row.started_at).timestamp())
                    for node, r in zip((p[0] for p in placement), req.ranks):
                        self.gpus_used[node].update(r.gpus)
                    self.jobs[row.id] = job
                    self.runs[row.id] = (req, handles)
                    s.add(EventRow(job_id=row.id, from_state="running", to_state="running",
                                   detail="re-adopted after a control-plane restart"))
                elif status.exit_code is not None:
                    row.exit_code = status.exit_code
                    row.finished_at = utcnow()
                    self._move(s, row, "succeeded" if status.exit_code == 0 else "failed",
                               f"ended while the control plane was down (exit {status.exit_code})")
                else:
                    self._move(s, row, "preempted", "its processes vanished: requeued")
                    self._admit(s, row, job, now, recovered=True)
            s.commit()

    # ---- the loop --------------------------------------------------------------------------

    def _admit(self, s, row: JobRow, job: Job, now: float, recovered: bool = False) -> None:
        decision = self.sched.submit(job, now)
        if decision is not None:
            self._move(s, row, "rejected", decision.reason)
            return
        self.jobs[row.id] = job
        if row.state != "admitted":
            self._move(s, row, "admitted", job.reason)

    def step(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with write_lock(self.engine), self.Session() as s:
            if now - self.services_at >= 0.25:  # replica counts: a quarter second is fresh
                self.services_at = now
                if reconcile_services(s, now):
                    s.commit()
            self._ingest(s, now)
            self._cancels(s, now)
            self._poll(s, now)
            s.commit()
            t0 = time.perf_counter()
            decisions = self.sched.cycle(now)
            CYCLE.observe(time.perf_counter() - t0)
            self._apply(s, decisions, now)
            if now - self.reasons_at >= 1.0:  # waiting reasons: fresh to the second
                self._reasons(s)
                self.reasons_at = now

    def _ingest(self, s, now: float) -> None:
        """Take in new submissions in bulk (plain SQL, one UPDATE and one INSERT for all):
        at a thousand submits a second, per-row ORM writes cost more than scheduling them."""
        jobs = JobRow.__table__
        rows = s.execute(select(jobs.c.id, jobs.c.tenant, jobs.c.name, jobs.c.spec,
                                jobs.c.submitted_s)
                         .where(jobs.c.state == "pending").order_by(jobs.c.id)).all()
        if not rows:
            return
        moves = []
        for row in rows:
            job = self._job(row, self._tenant(s, row.tenant))
            decision = self.sched.submit(job, now)
            if decision is None:
                self.jobs[row.id] = job
                self.written_reason[row.id] = job.reason  # so _reasons does not write it again
                moves.append({"job_id": row.id, "to": "admitted", "why": job.reason})
            else:
                moves.append({"job_id": row.id, "to": "rejected", "why": decision.reason})
        s.execute(update(jobs).where(jobs.c.id == bindparam("job_id"))
                  .values(state=bindparam("to"), reason=bindparam("why")), moves)
        at = utcnow()
        s.execute(insert(EventRow.__table__), [
            dict(job_id=m["job_id"], at=at, from_state="pending", to_state=m["to"],
                 detail=m["why"]) for m in moves])

    def _cancels(self, s, now: float) -> None:
        rows = s.scalars(select(JobRow).where(JobRow.cancel_requested.is_(True),
                                              JobRow.state.not_in(FINAL))).all()
        for row in rows:
            self._move(s, row, "cancelled", "drained and stopped: scaled down" if row.draining
                       else "cancelled by the tenant")
            row.finished_at = utcnow()
            s.commit()  # recorded before acting
            if row.id in self.runs:
                req, handles = self.runs[row.id]
                self.executor.stop(req, handles)
                self._free_gpus(row.id)
            job = self.jobs.pop(row.id, None)
            if job is not None:
                self.sched.cancel(job, now)

    def _poll(self, s, now: float) -> None:
        for job_id, (req, handles) in list(self.runs.items()):
            job = self.jobs[job_id]
            status = self.executor.status(req, handles)
            row = s.get(JobRow, job_id)
            if status.running:
                limit = job.time_limit_s
                if limit is not None and now - job.start_s > limit:
                    self._move(s, row, "failed", f"time limit {limit:.0f} s reached")
                    row.finished_at = utcnow()
                    s.commit()
                    self.executor.stop(req, handles)
                    self._end(job_id, now)
                continue
            row.exit_code = status.exit_code
            row.finished_at = utcnow()
            if status.lost:
                self._move(s, row, "failed", "its processes vanished")
            else:
                ok = status.exit_code == 0
                self._move(s, row, "succeeded" if ok else "failed",
                           f"exit code {status.exit_code}")
            self._end(job_id, now)

    def _end(self, job_id: int, now: float) -> None:
        job = self.jobs.pop(job_id)
        self.sched.finish(job, now)
        self._free_gpus(job_id)

    def _apply(self, s, decisions, now: float) -> None:
        for d in decisions:
            row = s.get(JobRow, d.job.id)
            if d.kind == "preempt":
                req, handles = self.runs[row.id]
                self._move(s, row, "preempted", d.reason)
                self._move(s, row, "admitted", d.reason)
                s.commit()
                self.executor.stop(req, handles)
                self._free_gpus(row.id)
            elif d.kind == "start":
                ranks = self._ranks(d.job.placement)
                row.attempt += 1
                row.placement = [{"node": r.node, "gpus": list(r.gpus)} for r in ranks]
                row.started_at = utcnow()
                self._move(s, row, "running", d.reason)
                s.commit()  # the start is on record before the processes exist
                req = self._request(row)
                self.runs[row.id] = (req, [])
                try:
                    handles = self.executor.start(req)
                except Exception as e:  # the engine refused it: fail it, free its booking
                    log.exception("job %s: start failed", row.id)
                    row.finished_at = utcnow()
                    self._move(s, row, "failed", f"the {self.executor.name} executor could "
                                                 f"not start it: {e}"[:1000])
                    s.commit()
                    self._end(row.id, now)
                    continue
                row.placement = [{**p, "pid": h} for p, h in zip(row.placement, handles)]
                s.commit()
                self.runs[row.id] = (req, handles)

    def _reasons(self, s) -> None:
        """Keep waiting jobs' reasons current for `kraft job ID`: one multi-row UPDATE of the
        reasons that changed (per-row ORM loads cost a query each, thousands per second under
        a deep queue)."""
        jobs = JobRow.__table__
        if len(self.written_reason) > 2 * len(self.jobs) + 1000:  # forget jobs that left
            self.written_reason = {i: r for i, r in self.written_reason.items() if i in self.jobs}
        changed = [{"job_id": job_id, "new_reason": job.reason}
                   for job_id, job in self.jobs.items()
                   if job_id not in self.runs and self.written_reason.get(job_id) != job.reason]
        if not changed:
            return
        s.execute(update(jobs).where(jobs.c.id == bindparam("job_id"))
                  .values(reason=bindparam("new_reason")), changed)
        s.commit()
        for c in changed:
            self.written_reason[c["job_id"]] = c["new_reason"]


def run_loop(plane: ControlPlane, stop: threading.Event, tick_s: float) -> None:
    """The scheduling loop: one step every `tick_s` until `stop` is set."""
    while not stop.is_set():
        try:
            plane.step()
        except Exception:  # keep going; the error is logged with its traceback
            log.exception("scheduling step failed")
        stop.wait(tick_s)


def loop_process(fleet: dict, db_url: str, runs_dir: str, policy: str, parent_pid: int,
                 tick_s: float = 0.05) -> None:
    """The loop in a process of its own, next to the API process (on PostgreSQL, which takes
    writers from several processes): the API then has a CPU and a GIL to itself. It dies with
    its parent (a killed `kraft serve` must not leave a loop behind that a restart would run a
    second time), and stops cleanly on SIGTERM."""
    import ctypes
    import signal

    from kraft.control.store import make_engine

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    plane = ControlPlane(FleetSpec.model_validate(fleet), make_engine(db_url), Path(runs_dir),
                         policy)
    plane.recover(time.time())
    gc.freeze()  # as in `kraft serve`: full collections skip what lives as long as the process
    run_loop(plane, stop, tick_s)
