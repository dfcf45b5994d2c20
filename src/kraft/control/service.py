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
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, delete, event, func, insert, select, true, update
from sqlalchemy.engine import Engine

from kraft.cluster.state import ClusterState, Placement
from kraft.control.metrics import CYCLE, STEP
from kraft.control.nodes import engine_report
from kraft.control.queue import snapshot
from kraft.control.store import (
    FINAL,
    AttemptRow,
    AuditRow,
    EventRow,
    JobRequestRow,
    JobRow,
    NodeRow,
    QueueRow,
    TenantRow,
    as_utc,
    sessions,
    write_lock,
)
from kraft.exec.base import Executor, Rank, RunRequest, statuses
from kraft.exec.identity import Identity, Isolation
from kraft.exec.router import make_executor
from kraft.infer.live import Scaling, autoscale_services, reconcile_services
from kraft.record import year_origin_s
from kraft.sched.build import SchedulingOptions, make_scheduler
from kraft.sched.job import Job, JobState, TenantState
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec

log = logging.getLogger("kraft.service")
DEFAULT_LIMIT_S = 7 * 86400  # planning horizon for jobs that give no time limit
HEALTH_EVERY_S = 5.0  # how often the engine is asked which nodes it has lost
QUEUE_ROWS_PER_STEP = 250  # tenants' queue snapshots written in one step
KILL_MARGIN_S = 5.0  # an attempt alive this long past its grace period is SIGKILLed from here


class ControlPlane:
    def __init__(self, fleet: FleetSpec, engine: Engine, executor: Executor | Path,
                 options: SchedulingOptions | str = "backfill",
                 isolation: Isolation | None = None, grace_s: float = 10.0,
                 single_user: bool = False, energy=None, clock=time.time, lease=None):
        """`executor`: an executor, or a work folder to run each site on the engine its spec
        names (kraft.exec.router). `options`: the scheduler's (kraft.sched.build), or a policy
        name. `isolation`: what jobs get (kraft.exec.identity); a service that cannot give
        each tenant its own account runs one tenant's jobs only, unless `single_user`.
        `grace_s`: SIGTERM to SIGKILL, on cancel, time limit and preemption. `energy`: the
        sites' signals (default: the fleet's series) for shifting and weighing. `clock`: epoch
        seconds now (tests and replays inject one). `lease`: on a shared database, the
        loop's right to act (kraft.control.leader.Lease): each commit and engine action
        checks it first."""
        if isinstance(options, str):
            options = SchedulingOptions(policy=options)
        self.engine = engine
        self.clock = clock
        self.now = clock()
        self.Session = sessions(engine)
        self.cluster = ClusterState(fleet)
        self.executor = (make_executor(self.cluster, executor, isolation)
                         if isinstance(executor, Path) else executor)
        self.epoch = None  # the lease's, written on each attempt
        self.lease = lease
        if lease is not None:
            from kraft.control.leader import Fenced

            self.executor, self.epoch = Fenced(self.executor, lease), lease.epoch
            event.listen(self.Session, "before_commit", lease.fence)
        self.grace_s = grace_s
        # Without accounts per tenant, one tenant's jobs could touch another's: refuse all but
        # the first tenant's, unless the operator said this host has a single user.
        self.one_tenant = (isolation is not None and not isolation.accounts
                           and not single_user)
        self.owner: str | None = None
        self.node_index = self.cluster.node_index()
        if energy is None and (options.shift_by or options.prefer in ("carbon", "price")):
            from kraft.energy.books import inputs_for

            energy = inputs_for(fleet)
        self.options = options
        # hour h of the signals is hour h of this UTC year (kraft.record)
        self.sched = make_scheduler(self.cluster, [], options, energy,
                                    year_origin_s(self.now))
        self.jobs: dict[int, Job] = {}  # by database id, jobs the scheduler holds
        self.runs: dict[int, tuple[RunRequest, list[int]]] = {}  # running: request, handles
        # Attempts that ended on record and are being stopped: their GPUs are handed on only
        # once every process is gone (request, handles, when to SIGKILL them from here).
        self.stopping: dict[int, tuple[RunRequest, list[int], float]] = {}
        # Started by the scheduler, not yet launched: the GPUs' last attempt is still stopping.
        self.launching: dict[int, tuple[Job, str]] = {}
        self.stop_sent: dict[int, float] = {}  # when each stopping attempt was last signalled
        # When each running attempt with a time limit must end (its launch + the limit).
        self.limit_at_s: dict[int, float] = {}
        self.polled_at = -math.inf  # the last engine poll, on the loop's clock
        self.poll_cost_s = 0.0  # and what it took
        self.gpus_used: dict[int, set[int]] = defaultdict(set)  # node -> GPU indices in use
        self.written_reason: dict[int, str] = {}  # last reason stored, per waiting job
        self.node_marks: dict[int, tuple[str, bool]] = {}  # drained/down nodes: state, evict
        self.spec_seen: dict[str, dict] = {}  # each tenant's spec as last read
        self.reasons_at = 0.0
        self.services_at = 0.0
        self.scaling: dict[int, Scaling] = {}  # the autoscaler's memory, per service
        self.health_at = -math.inf
        self.windows_seen: list[tuple[int, float, float]] = []
        self.queues_seen: dict[str, dict] = {}
        self.queues_pending: dict[str, dict] = {}  # changed, not yet written
        self.queues_at = self.tenants_at = -math.inf
        self.tenant_audit_seen: int | None = None  # the last tenant.update read

    # ---- bookkeeping helpers ---------------------------------------------------------------

    @staticmethod
    def _close_attempts(session, closes: list[dict]) -> None:
        if not closes:
            return
        attempts = AttemptRow.__table__
        session.execute(update(attempts).where(attempts.c.job_id == bindparam("j"),
                                               attempts.c.attempt == bindparam("a"))
                        .values(end_s=bindparam("end"), ended=bindparam("how")), closes)

    def _tenant(self, session, name: str) -> TenantState | None:
        t = self.sched.tenants.get(name)
        if t is None:
            row = session.get(TenantRow, name)
            if row is None:
                return None
            t = TenantState(TenantSpec.model_validate(row.spec))
            self.sched.add_tenant(t)
        return t

    def _at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def _move(self, session, row: JobRow, to: str, detail: str = "",
              ended: str | None = None, closes: list | None = None) -> None:
        """A state change, on record; leaving `running` closes the attempt's record row in
        the same transaction (kraft.record: how it ended — `ended`, else the new state — and
        when). `closes`: collect the close for one UPDATE of many (`_close_attempts`)."""
        session.add(EventRow(job_id=row.id, at=self._at(), from_state=row.state, to_state=to,
                             detail=detail))
        if row.state == "running" and to != "running":
            close = {"j": row.id, "a": row.attempt, "end": self.now, "how": ended or to}
            if closes is not None:
                closes.append(close)
            else:
                self._close_attempts(session, [close])
        row.state = to
        row.reason = detail or row.reason

    def _job(self, row: JobRow, tenant: TenantState) -> Job:
        spec = JobSpec.model_validate(row.spec)
        # the work to plan with: a replay's known run time, else the time limit, else a week
        work_s = spec.duration_s or spec.time_limit_s or DEFAULT_LIMIT_S
        job = Job(row.id, tenant, spec.gpus, row.submitted_s, work_s, name=row.name,
                   gpu_model=spec.gpu_model, time_limit_s=spec.time_limit_s,
                   checkpoint_interval_s=spec.checkpoint_interval_s,
                   restart_cost_s=spec.restart_cost_s, preemptible=spec.preemptible,
                   flex_window_s=spec.window_s)
        if row.queue_s is not None:  # the operator moved it (top)
            job.order_s = row.queue_s
        return job

    def _ranks(self, placement: Placement) -> tuple[Rank, ...] | None:
        """GPU indices for a placement, or None while some of them still belong to an attempt
        that is being stopped."""
        ranks = []
        for node, k in placement:
            used = self.gpus_used[node]
            size = self.cluster.pools[self.cluster.node_pool[node]].gpus_per_node
            picked = tuple(i for i in range(size) if i not in used)[:k]
            if len(picked) < k:
                return None
            ranks.append(Rank(self.cluster.node_name[node], picked))
        for (node, _), rank in zip(placement, ranks):
            self.gpus_used[node].update(rank.gpus)
        return tuple(ranks)

    def _hold_gpus(self, req: RunRequest) -> None:
        for rank in req.ranks:
            if rank.node in self.node_index:
                self.gpus_used[self.node_index[rank.node]].update(rank.gpus)

    def _free_gpus(self, req: RunRequest) -> None:
        for rank in req.ranks:
            if rank.node in self.node_index:
                self.gpus_used[self.node_index[rank.node]].difference_update(rank.gpus)

    def _release(self, job_id: int, alive: bool = True) -> None:
        """The attempt has ended on record. Its GPUs go back once its processes are gone: at
        once if none lives, else after the stop (SIGTERM, the grace period, SIGKILL)."""
        run = self.runs.pop(job_id, None)
        self.limit_at_s.pop(job_id, None)
        if run is None:
            return
        req, handles = run
        if not alive:
            self._free_gpus(req)
            return
        self.executor.stop(req, handles)
        if "stops-at-once" in self.executor.capabilities:  # no status query to learn it
            self._free_gpus(req)
            return
        self.stop_sent[job_id] = time.monotonic()
        self.stopping[job_id] = (req, handles, time.monotonic() + req.grace_s + KILL_MARGIN_S)

    def _reap(self) -> None:
        """Hand back the GPUs of stopped attempts whose last process is gone."""
        for job_id, (req, handles, kill_at) in list(self.stopping.items()):
            if not self.executor.status(req, handles).alive:
                del self.stopping[job_id]
                self._free_gpus(req)
            elif self.stop_sent.get(job_id, 0.0) < time.monotonic() - 1.0:
                # again each second: a rank that was still starting may have missed it
                self.stop_sent[job_id] = time.monotonic()
                self.executor.stop(req, handles)
            if job_id not in self.stopping:
                self.stop_sent.pop(job_id, None)
            elif time.monotonic() > kill_at:
                log.warning("job %s attempt %s: alive past its grace period: SIGKILL", job_id,
                            req.attempt)
                self.executor.kill(req, handles)
                self.stopping[job_id] = (req, handles, time.monotonic() + KILL_MARGIN_S)

    def _request(self, row: JobRow) -> RunRequest:
        spec = JobSpec.model_validate(row.spec)
        ranks = tuple(Rank(r["node"], tuple(r["gpus"])) for r in row.placement or [])
        first = (row.placement or [{}])[0]
        env = {**spec.env, **({"PORT": str(first["port"])} if "port" in first else {})}
        t = self.sched.tenants.get(row.tenant)
        ident = Identity(row.tenant) if t is None else Identity(
            row.tenant, t.spec.user, t.spec.group, tuple(t.spec.paths), t.spec.slurm_account)
        return RunRequest(row.id, row.attempt, tuple(spec.command or ()), ranks, env, ident,
                          self.grace_s, first.get("master_port"))

    # ---- recovery --------------------------------------------------------------------------

    def recover(self, now: float) -> None:
        """Rebuild the scheduler from the database after a start or a crash.

        Waiting jobs go back to the queue. A running job is re-adopted if its processes are
        alive, finished if they left exit statuses, and requeued if they vanished. A job is
        never started twice: its processes are found by job id and attempt, even when the
        crash came before their pids were written down; ranks of a start the crash cut short
        are started now, and a rank that ever began is never started again for the attempt.
        Processes of attempts the database no longer counts as running (a crash between
        recording an end and stopping it) are stopped, and hold their GPUs until gone."""
        self.now = now
        with write_lock(self.engine), self.Session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.state.not_in(FINAL)).order_by(
                func.coalesce(JobRow.queue_s, JobRow.submitted_s), JobRow.id)).all()
            for t in s.scalars(select(TenantRow)):  # all at once: not a query per job
                if t.name not in self.sched.tenants:
                    self.sched.add_tenant(TenantState(TenantSpec.model_validate(t.spec)))
            running, closes, tally = [], [], Counter()
            with s.no_autoflush:  # 10,000 jobs: their writes go in a few statements
                for row in rows:
                    tenant = self._tenant(s, row.tenant)
                    if row.state in ("pending", "held"):
                        tally[f"{row.state} (taken in as usual)"] += 1
                        continue  # ingest() takes it; a held job waits for its release
                    job = self._job(row, tenant)
                    if row.state != "running":
                        self._admit(s, row, job, now, recovered=True)
                        tally["back in the queue"] += 1
                        continue
                    found = self._recover_handles(s, row, job)
                    if found is None:
                        tally["failed (their start could not be completed)"] += 1
                    else:
                        running.append((row, job, *found))
                found = statuses(self.executor, [(req, h) for _, _, req, h in running])
                for (row, job, req, handles), status in zip(running, found):
                    tally[self._recover_running(s, row, job, req, handles, status, now,
                                                closes)] += 1
            if closes:
                self._close_attempts(s, closes)
            current = {job_id: req.attempt for job_id, (req, _) in self.runs.items()}
            for req, handles in self.executor.orphans(current):
                row = s.get(JobRow, req.job_id)
                if row is not None and row.attempt == req.attempt and row.placement:
                    req = self._request(row)
                    self._hold_gpus(req)
                log.warning("job %s attempt %s: still alive though not running on record: "
                            "stopping it", req.job_id, req.attempt)
                self.executor.stop(req, handles)
                self.stopping[req.job_id] = (req, handles,
                                             time.monotonic() + req.grace_s + KILL_MARGIN_S)
                tally["orphaned processes stopped"] += 1
            s.commit()
        log.info("recovered %d unfinished jobs%s", len(rows),
                 ": " + ", ".join(f"{n} {what}" for what, n in sorted(tally.items()))
                 if tally else "")

    def _recover_handles(self, s, row: JobRow, job: Job) -> tuple[RunRequest, list] | None:
        """A running job's handles on the engine, its start completed where a crash cut it
        short; None if that failed (the job is failed and its ranks stopped)."""
        req = self._request(row)
        handles = [r.get("pid") for r in row.placement or []]
        if not handles or None in handles:
            handles = self.executor.find(req)
        never = [r for r, h in enumerate(handles) if h is None
                 and not self.executor.started(req, r)]
        if never:  # the crash cut the start short: start the ranks that never began
            try:
                for r, h in zip(never, self.executor.start(req, only=never)):
                    handles[r] = h
            except Exception as e:
                log.exception("job %s: completing its start failed", row.id)
                row.finished_at = self._at()
                self._move(s, row, "failed", f"the {self.executor.name} executor could "
                                             f"not start it: {e}"[:1000])
                self.stopping[row.id] = (req, handles, time.monotonic() + req.grace_s)
                self._hold_gpus(req)
                self.executor.stop(req, handles)
                return None
            row.placement = [{**p, "pid": h} for p, h in zip(row.placement, handles)]
        return req, handles

    def _recover_running(self, s, row: JobRow, job: Job, req: RunRequest, handles: list,
                         status, now: float, closes: list) -> str:
        """Re-adopt a job found running, or record how it ended while the loop was down;
        says which, for recovery's log line."""
        names = self.node_index
        if status.running:
            placement = tuple((names[r.node], len(r.gpus)) for r in req.ranks)
            pool = self.cluster.pools[self.cluster.node_pool[placement[0][0]]]
            started = (row.submitted_s if row.started_at is None
                       else as_utc(row.started_at).timestamp())
            self.sched.adopt(job, placement, pool, started)
            self._hold_gpus(req)
            self.jobs[row.id] = job
            self.runs[row.id] = (req, handles)
            self._limit(row.id, job, started)
            s.add(EventRow(job_id=row.id, at=self._at(), from_state="running",
                           to_state="running", detail="re-adopted after a control-plane restart"))
            return "re-adopted (running)"
        if status.alive:  # one rank failed or vanished: the rest are being stopped
            self._hold_gpus(req)
            self.stopping[row.id] = (req, handles,
                                     time.monotonic() + req.grace_s + KILL_MARGIN_S)
        if status.exit_code is not None:
            row.exit_code = status.exit_code
            row.finished_at = self._at()
            self._move(s, row, "succeeded" if status.exit_code == 0 else "failed",
                       f"ended while the control plane was down (exit {status.exit_code})",
                       closes=closes)
            return "finished while down"
        log.warning("job %s attempt %s: vanished at recovery (handles %s, started %s)",
                    row.id, row.attempt, handles,
                    [self.executor.started(req, r) for r in range(len(req.ranks))])
        self._move(s, row, "preempted", "its processes vanished: requeued", closes=closes)
        self._admit(s, row, job, now, recovered=True)
        return "requeued (their processes vanished)"

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
        if self.lease is not None:  # first of all: a loop that woke from a pause stops here
            self.lease.check()
        now = self.clock() if now is None else now
        self.now = now
        with write_lock(self.engine), self.Session() as s:
            if now - self.services_at >= 0.25:  # replica counts: a quarter second is fresh
                self.services_at = now
                if autoscale_services(s, now, self.scaling) | reconcile_services(s, now):
                    s.commit()
            if now - self.health_at >= HEALTH_EVERY_S:  # lost nodes first: their jobs
                self.health_at = now  # requeue as failures, not end as vanished
                self._engine_nodes(s, now)
            self._poll(s, now)  # ends before arrivals, as in the twin
            self._ingest(s, now)
            self._cancels(s, now)
            self._reap()
            s.commit()
            self._nodes(s, now)
            self._requests(s, now)
            self._launch_waiting(s, now)
            t0 = time.perf_counter()
            decisions = self.sched.cycle(now)
            CYCLE.observe(time.perf_counter() - t0)
            self._apply(s, decisions, now)
            # Each second, on separate steps (at 10,000 waiting jobs and 2,000 tenants each
            # costs tens of ms: one step should not pay them all): the waiting reasons for
            # `kraft job`, the tenants' queues for `kraft queue`, the operator's tenant edits.
            if now - self.reasons_at >= 1.0:
                self._reasons(s)
                self.reasons_at = now
            elif now - self.queues_at >= 1.0 and now - self.reasons_at >= 0.3:
                self._queues(s, now)
                self.queues_at = now
            elif now - self.tenants_at >= 1.0 and now - self.queues_at >= 0.3:
                self._tenant_updates(s)
                self.tenants_at = now
            elif self.queues_pending:
                self._write_queues(s, now)

    def _engine_nodes(self, s, now: float) -> None:
        """Nodes the engine reports lost are marked down (kraft.control.nodes), and back up
        when it has them again."""
        ask = getattr(self.executor, "nodes_down", None)
        if ask is None:
            return
        try:
            down = ask()
        except Exception as e:  # the engine did not answer: judge nothing this time
            log.warning("the %s executor did not say which nodes are down: %s",
                        self.executor.name, e)
            return
        if engine_report(s, self.cluster, down, self.executor.name):
            s.commit()
            self._nodes(s, now)

    def _nodes(self, s, now: float) -> None:
        """Apply the operator's drains, downs and resumes (kraft.control.nodes): a node out of
        placement takes no new work; with `evict` (drain --now, down) its jobs are stopped
        and requeued from their last checkpoint, a down node's counted as failures. A
        maintenance window goes to the scheduler, which opens and closes it on time; once it
        is over its row goes."""
        marks, windows, over = {}, [], []
        for row in s.execute(select(NodeRow.name, NodeRow.state, NodeRow.evict,
                                    NodeRow.reason, NodeRow.start_s, NodeRow.end_s)):
            node = self.node_index.get(row.name)
            if node is None:
                continue
            if row.start_s is None:
                marks[node] = (row.state, row.evict, row.reason)
            elif row.end_s <= now:
                over.append(row.name)
            else:
                windows.append((node, row.start_s, row.end_s))
        windows.sort()
        if windows != self.windows_seen:
            self.windows_seen = windows
            self.sched.set_maintenance(windows)
        for name in over:
            s.delete(s.get(NodeRow, name))
            s.add(AuditRow(actor="maintenance", action="node.resume", target=name[:200],
                           address="", detail="its maintenance window is over"))
        if over:
            s.commit()
        if marks.keys() == self.node_marks.keys() and all(
                self.node_marks[n] == m[:2] for n, m in marks.items()):
            return
        for node in self.node_marks.keys() - marks.keys():
            self.sched.set_node_up(node, True)
        lost, drained = {}, {}  # node -> why its jobs stop
        for node, (state, evict, reason) in marks.items():
            if self.node_marks.get(node) == (state, evict):
                continue
            self.sched.set_node_up(node, False)
            if evict:
                what = "down" if state == "down" else "drained by the operator"
                why = f"node {self.cluster.node_name[node]} {what} ({reason})"
                (lost if state == "down" else drained)[node] = why
        self.node_marks = {n: m[:2] for n, m in marks.items()}
        decisions = self.sched.evict(lost, now, failure=True) if lost else []
        if drained:
            decisions += self.sched.evict(drained, now)
        self._apply(s, decisions, now)
        s.commit()

    def _tenant_updates(self, s) -> None:
        """Tenants the operator changed (kraft admin tenant update) hold from the next
        cycle, without a restart. Found by their audit rows (an index range, not every
        tenant's spec each second); the first call reads them all."""
        q = select(TenantRow.name, TenantRow.spec)
        if self.tenant_audit_seen is not None:
            # a little behind the last seen: an update committed late with a lower id
            edited = s.execute(select(AuditRow.id, AuditRow.target).where(
                AuditRow.id > self.tenant_audit_seen - 100,
                AuditRow.action == "tenant.update")).all()
            if not edited:
                return
            self.tenant_audit_seen = max(self.tenant_audit_seen, *(i for i, _ in edited))
            q = q.where(TenantRow.name.in_({t for _, t in edited}))
        else:
            self.tenant_audit_seen = s.scalar(select(func.max(AuditRow.id))) or 0
        for name, spec in s.execute(q):
            t = self.sched.tenants.get(name)
            if t is not None and spec != self.spec_seen.get(name):
                self.spec_seen[name] = spec
                new = TenantSpec.model_validate(spec)
                if new != t.spec:
                    self.sched.update_tenant(new)

    def _requests(self, s, now: float) -> None:
        """Carry out the operator's holds, releases, tops and requeues
        (kraft.control.operator)."""
        pending = s.scalars(select(JobRequestRow).where(JobRequestRow.done_at.is_(None))
                            .order_by(JobRequestRow.id)).all()
        for req in pending:
            row = s.get(JobRow, req.job_id)
            why = f"{req.action} by the operator: {req.reason}"
            outcome = "done"
            if req.action == "hold" and row.state in ("pending", "admitted", "preempted"):
                job = self.jobs.pop(row.id, None)
                self.launching.pop(row.id, None)
                if job is not None:
                    self.sched.cancel(job, now)  # out of the queue; the row stays the job's
                self._move(s, row, "held", f"waiting: held by the operator: {req.reason}")
            elif req.action == "release" and row.state == "held":
                self._move(s, row, "pending", f"released by the operator: {req.reason}")
            elif req.action == "top" and row.id in self.jobs and row.id not in self.runs:
                for job in self.sched.top(self.jobs[row.id], now):
                    s.get(JobRow, job.id).queue_s = job.order_s
                s.add(EventRow(job_id=row.id, at=self._at(), from_state=row.state,
                               to_state=row.state, detail=f"first in its tenant's order: {why}"))
            elif req.action == "requeue" and row.id in self.runs:
                self._apply(s, [self.sched.requeue(self.jobs[row.id], now,
                                                   f"waiting: {why}")], now)
            else:
                outcome = f"not done: the job was {row.state}"
            req.done_at, req.outcome = self._at(), outcome
            s.commit()

    def _refusal(self, s, tenant: str) -> str | None:
        """Why a job of `tenant` may not run on a service that cannot isolate tenants."""
        if not self.one_tenant:
            return None
        if self.owner is None:
            self.owner = s.scalars(select(TenantRow.name).order_by(
                TenantRow.created_at, TenantRow.name).limit(1)).first()
        if tenant == self.owner:
            return None
        return (f"rejected: this service cannot isolate tenants from each other (it is not "
                f"root), so it runs the jobs of tenant {self.owner!r} only; run it as root, "
                f"or start it with --single-user if one person uses every tenant")

    def _ingest(self, s, now: float) -> None:
        """Take in new submissions in bulk (plain SQL, one UPDATE and one INSERT for all):
        at a thousand submits a second, per-row ORM writes cost more than scheduling them."""
        jobs = JobRow.__table__
        rows = s.execute(select(jobs.c.id, jobs.c.tenant, jobs.c.name, jobs.c.spec,
                                jobs.c.submitted_s, jobs.c.queue_s)
                         .where(jobs.c.state == "pending").order_by(jobs.c.id)).all()
        if not rows:
            return
        moves = []
        for row in rows:
            refused = self._refusal(s, row.tenant)
            if refused:
                moves.append({"job_id": row.id, "to": "rejected", "why": refused})
                continue
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
        at = self._at()
        s.execute(insert(EventRow.__table__), [
            dict(job_id=m["job_id"], at=at, from_state="pending", to_state=m["to"],
                 detail=m["why"]) for m in moves])

    def _cancels(self, s, now: float) -> None:
        # `= true`, not `IS TRUE`: PostgreSQL uses the index only for the former (a step paid
        # a scan of every job ever submitted)
        rows = s.scalars(select(JobRow).where(JobRow.cancel_requested == true(),
                                              JobRow.state.not_in(FINAL))).all()
        for row in rows:
            self._move(s, row, "cancelled", row.cancel_reason or (
                "drained and stopped: scaled down" if row.draining else "cancelled by the tenant"))
            row.finished_at = self._at()
            s.commit()  # recorded before acting
            self._release(row.id)
            self.launching.pop(row.id, None)
            job = self.jobs.pop(row.id, None)
            if job is not None:
                self.sched.cancel(job, now)

    def _poll(self, s, now: float) -> None:
        """Every running attempt's status in one engine query; the ones that ended (or ran
        past their time limit) are recorded together: one SELECT of their rows, one UPDATE
        closing their attempts, their events in one INSERT at the step's commit."""
        # At most a fifth of the loop's time goes to polling: with 10,000 attempts a poll
        # costs ~15 ms (one `squeue` listing far more), so it is not run on every 50 ms step.
        if now - self.polled_at < 4 * self.poll_cost_s:
            return
        t0 = time.perf_counter()
        self.polled_at = now
        ended = [(job_id, status) for job_id, status in zip(
            self.runs, statuses(self.executor, list(self.runs.values()))) if not status.running]
        gone = {job_id for job_id, _ in ended}
        over = [job_id for job_id, at in self.limit_at_s.items()
                if now > at and job_id not in gone]
        self.poll_cost_s = time.perf_counter() - t0
        if not (over or ended):
            return
        ids = over + [job_id for job_id, _ in ended]
        rows = {r.id: r for r in s.scalars(select(JobRow).where(JobRow.id.in_(ids)))}
        closes: list[dict] = []
        with s.no_autoflush:
            for job_id in over:
                row = rows[job_id]
                limit = self.jobs[job_id].time_limit_s
                self._move(s, row, "failed", f"time limit {limit:.0f} s reached",
                           closes=closes)
                row.finished_at = self._at()
            for job_id, status in ended:
                row = rows[job_id]
                row.exit_code = status.exit_code
                row.finished_at = self._at()
                if status.lost:
                    self._move(s, row, "failed", "its processes vanished" if not status.alive
                               else "a rank vanished without an exit status: the gang was "
                                    "stopped", closes=closes)
                else:
                    ok = status.exit_code == 0
                    self._move(s, row, "succeeded" if ok else "failed",
                               f"exit code {status.exit_code}", closes=closes)
        self._close_attempts(s, closes)
        if over:
            s.commit()  # on record before the stop
        for job_id in over:
            self._release(job_id)
            self._end(job_id, now)
        for job_id, status in ended:
            self._release(job_id, alive=status.alive)
            self._end(job_id, now)

    def _limit(self, job_id: int, job: Job, launched_s: float) -> None:
        if job.time_limit_s is not None:
            self.limit_at_s[job_id] = launched_s + job.time_limit_s

    def _end(self, job_id: int, now: float) -> None:
        job = self.jobs.pop(job_id)
        self.sched.finish(job, now)

    def _apply(self, s, decisions, now: float) -> None:
        if not decisions:
            return
        rows = {r.id: r for r in s.scalars(select(JobRow).where(
            JobRow.id.in_({d.job.id for d in decisions})))}  # one SELECT for the cycle's
        starts = []
        for d in decisions:
            row = rows[d.job.id]
            if d.kind == "start":
                starts.append((row, d.job, d.reason))
                continue
            if starts:  # in order: a job preempted for a start, then started again
                self._starts(s, starts)
                starts = []
            if d.kind in ("preempt", "fail"):
                if self.launching.pop(row.id, None) is not None:
                    row.reason = d.reason  # never launched: nothing to stop
                    continue
                self._move(s, row, "preempted", d.reason,
                           ended="failed" if d.kind == "fail" else None)
                self._move(s, row, "admitted", d.reason)
                s.commit()
                self._release(row.id)
        if starts:
            self._starts(s, starts)

    def _starts(self, s, starts: list[tuple[JobRow, Job, str]]) -> None:
        """The scheduler's starts, in one transaction before the engine runs any and one
        after (with the handles), however many: a start is on record before its processes
        exist. One whose GPUs, or whose own previous attempt, are still being stopped
        waits in `launching`."""
        ready = []
        for row, job, why in starts:
            if self._record_start(s, row, job, why):
                ready.append(row)
            else:
                self.launching[row.id] = (job, why)
                row.reason = ("starting: waiting for the processes of the attempt before it "
                              "on these GPUs to end (grace period)")
        s.commit()
        for row in ready:
            self._engine_start(s, row)
        if ready:
            s.commit()

    def _launch_waiting(self, s, now: float) -> None:
        for job_id, (job, why) in list(self.launching.items()):
            if job.state is not JobState.RUNNING:  # preempted or cancelled meanwhile
                del self.launching[job_id]
                continue
            row = s.get(JobRow, job_id)
            if self._record_start(s, row, job, why):
                del self.launching[job_id]
                s.commit()
                self._engine_start(s, row)
                s.commit()

    def _record_start(self, s, row: JobRow, job: Job, why: str) -> bool:
        """Put the start on record (the caller commits); False while the GPUs it needs, or
        this job's own previous attempt, are still being stopped."""
        if row.id in self.stopping:
            return False
        ranks = self._ranks(job.placement)
        if ranks is None:
            return False
        row.attempt += 1
        row.placement = [{"node": r.node, "gpus": list(r.gpus)} for r in ranks]
        # ports drawn at random, never derived from the id: a port another tenant's job can
        # predict is one it can take first (the gateway also checks who holds a replica's)
        row.placement[0]["master_port"] = free_port()
        if row.service_id is not None:
            row.placement[0]["port"] = free_port()
        row.started_at = self._at()
        s.add(AttemptRow(job_id=row.id, attempt=row.attempt, tenant=row.tenant,
                         site=job.pool.site.name, pool=job.pool.label,
                         nodes=[r.node for r in ranks], gpus=job.gpus, start_s=self.now,
                         leader_epoch=self.epoch))
        self._move(s, row, "running", why)
        return True

    def _engine_start(self, s, row: JobRow) -> None:
        """Run a start that is on record; the handles go on record with the caller's
        commit."""
        req = self._request(row)
        self.runs[row.id] = (req, [])
        self._limit(row.id, self.jobs[row.id], self.now)
        try:
            handles = self.executor.start(req)
        except Exception as e:  # the engine refused it: fail it, free its booking
            log.exception("job %s: start failed", row.id)
            row.finished_at = self._at()
            self._move(s, row, "failed", f"the {self.executor.name} executor could "
                                         f"not start it: {e}"[:1000])
            self._release(row.id, alive=False)
            self._end(row.id, self.now)
            return
        row.placement = [{**p, "pid": h} for p, h in zip(row.placement, handles)]
        self.runs[row.id] = (req, handles)

    def _queues(self, s, now: float) -> None:
        """Each tenant's queue for `kraft queue` (kraft.control.queue), rewritten where it
        changed, QUEUE_ROWS_PER_STEP tenants a step (when 2,000 tenants' queues change at
        once, their rows are ~100 ms of writes: spread over the steps that follow)."""
        for tenant, value in snapshot(self.sched, now).items():
            if self.queues_seen.get(tenant) != value:
                self.queues_seen[tenant] = self.queues_pending[tenant] = value
        self._write_queues(s, now)

    def _write_queues(self, s, now: float) -> None:
        """One DELETE and one multi-row INSERT for the next tenants whose queue changed."""
        chunk = dict(itertools.islice(self.queues_pending.items(), QUEUE_ROWS_PER_STEP))
        if not chunk:
            return
        for tenant in chunk:
            del self.queues_pending[tenant]
        queues = QueueRow.__table__
        s.execute(delete(queues).where(queues.c.tenant.in_(list(chunk))))
        s.execute(insert(queues), [{"tenant": t, "at_s": now, "value": v}
                                   for t, v in chunk.items()])
        s.commit()

    def _reasons(self, s) -> None:
        """Keep waiting jobs' reasons current for `kraft job ID`: one multi-row UPDATE of the
        reasons that changed (per-row ORM loads cost a query each, thousands per second under
        a deep queue)."""
        jobs = JobRow.__table__
        if len(self.written_reason) > 2 * len(self.jobs) + 1000:  # forget jobs that left
            self.written_reason = {i: r for i, r in self.written_reason.items() if i in self.jobs}
        changed = [{"job_id": job_id, "new_reason": job.reason}
                   for job_id, job in self.jobs.items()
                   if job_id not in self.runs and job_id not in self.launching
                   and self.written_reason.get(job_id) != job.reason]
        if not changed:
            return
        s.execute(update(jobs).where(jobs.c.id == bindparam("job_id"))
                  .values(reason=bindparam("new_reason")), changed)
        s.commit()
        for c in changed:
            self.written_reason[c["job_id"]] = c["new_reason"]


def free_port() -> int:
    """A TCP port free on this host now, chosen by the kernel at random."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Garbage:
    """The service's garbage collection, out of the steps' way. Python's full collection
    scans every object; with 10,000 jobs running it took 110-190 ms, ten times in fifty
    steps (bench/fleet_scale.py --parts). So, each second, what the young collections let
    live is frozen (gc.freeze, cheap: the collector skips it from then on; refcounting still
    frees it), and full collections only scan the last second's survivors. Every ten minutes
    everything is unfrozen and collected once, so that cycles that died frozen are freed:
    one pause of that size per ten minutes instead of several a second. For a service's
    process only: frozen cycles of a test process would outlive its tests."""

    FREEZE_EVERY_S, FULL_EVERY_S = 1.0, 600.0

    def __init__(self):
        gc.collect()
        gc.freeze()
        self.frozen_at = self.full_at = time.monotonic()

    def after_step(self) -> None:
        now = time.monotonic()
        if now - self.full_at >= self.FULL_EVERY_S:
            gc.unfreeze()
            gc.collect()
            self.full_at = now
        elif now - self.frozen_at < self.FREEZE_EVERY_S:
            return
        gc.freeze()
        self.frozen_at = now


def log_to_stderr() -> None:
    """What `kraft serve` says it does (listening, recovery, the loop's start, leadership):
    Kraft's INFO lines on stderr, in each of its processes."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("kraft").setLevel(logging.INFO)  # the libraries' INFO is noise here


def run_loop(plane: ControlPlane, stop: threading.Event, tick_s: float,
             garbage: Callable[[], Garbage] | None = None) -> None:
    """The scheduling loop: one step every `tick_s` until `stop` is set (or its lease is
    lost: kraft.control.leader.LeaseLost). `garbage`: made when the loop starts (after
    recovery), in the service's own process only."""
    garbage = garbage() if garbage is not None else None
    options = plane.options
    log.info("scheduling loop started: policy %s%s, a step every %.0f ms, %d GPUs on the %s "
             "engine", options.policy,
             "".join(f" {k}={v}" for k, v in options.policy_params.items()), tick_s * 1e3,
             plane.cluster.total_gpus, plane.executor.name)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            plane.step()
        except Exception:  # keep going; the error is logged with its traceback
            log.exception("scheduling step failed")
        STEP.observe(time.perf_counter() - t0)
        if garbage is not None:
            garbage.after_step()
        stop.wait(tick_s)


def loop_process(fleet: dict, db_url: str, runs_dir: str, scheduling: dict, parent_pid: int,
                 options: dict, tick_s: float = 0.05) -> None:
    """The loop in a process of its own, next to the API process (on PostgreSQL, which takes
    writers from several processes): the API then has a CPU and a GIL to itself. It dies with
    its parent (a killed `kraft serve` must not leave a loop behind that a restart would run a
    second time), and stops cleanly on SIGTERM. `scheduling`: SchedulingOptions.as_dict();
    `options`: ControlPlane's other keyword arguments, with `isolation` as a dict."""
    import ctypes
    import signal

    from kraft.control.store import make_engine

    log_to_stderr()
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    iso = options.get("isolation")
    options = {**options, "isolation": Isolation(**{**iso, "work_root": Path(iso["work_root"])})
               if iso else None}
    from kraft.control.leader import LOST_EXIT, Lease, LeaseLost, fence_connections

    engine = make_engine(db_url)
    fence_connections(engine)
    lease = Lease(engine)  # one loop per database: the others stand by
    if not lease.wait(stop):
        return
    try:
        plane = ControlPlane(FleetSpec.model_validate(fleet), engine, Path(runs_dir),
                             SchedulingOptions.from_dict(scheduling), lease=lease, **options)
        plane.recover(time.time())
        run_loop(plane, stop, tick_s, garbage=Garbage)
    except LeaseLost as e:
        log.error("leader: %s: this loop applies nothing more; standing by again", e)
        os._exit(LOST_EXIT)  # at once: no cleanup of this process may act either
    lease.release()  # a clean stop (SIGTERM): a standby takes over without waiting
