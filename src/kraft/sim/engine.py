"""The simulator: a virtual clock, an event heap, and the shared scheduler.

Events are ordered by (time, kind, sequence) so that equal-time events always pop in the same
order: finishes free capacity before arrivals see it. After all events of one instant the
scheduler runs one cycle; its decisions become follow-up events.
"""

from __future__ import annotations

import gc
import heapq
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kraft.record import ENDED, Record
from kraft.sched.job import Job, JobState
from kraft.sched.scheduler import Scheduler
from kraft.sim.failures import FailureModel

FINISH, FAIL, WAKEUP = 0, 1, 2


@dataclass
class Timeline:
    """Step functions sampled after every cycle: value holds from t until the next t."""

    t_s: array = field(default_factory=lambda: array("d"))
    allocated_gpus: array = field(default_factory=lambda: array("l"))
    waiting_jobs: array = field(default_factory=lambda: array("l"))
    fragmented_gpus: array = field(default_factory=lambda: array("l"))


@dataclass
class Segments:
    """Every stretch a job ran without interruption, as the run goes (kraft.record)."""

    job: array = field(default_factory=lambda: array("l"))  # index into SimOutcome.jobs
    attempt: array = field(default_factory=lambda: array("l"))
    pool: array = field(default_factory=lambda: array("l"))
    gpus: array = field(default_factory=lambda: array("l"))
    start_s: array = field(default_factory=lambda: array("d"))
    end_s: array = field(default_factory=lambda: array("d"))
    ended: array = field(default_factory=lambda: array("b"))
    placement: list = field(default_factory=list)  # node indices and GPUs, per segment

    def add(self, job: int, attempt: int, pool: int, gpus: int, placement, start_s: float,
            end_s: float, ended: str) -> None:
        self.job.append(job)
        self.attempt.append(attempt)
        self.pool.append(pool)
        self.gpus.append(gpus)
        self.start_s.append(start_s)
        self.end_s.append(end_s)
        self.ended.append(ENDED[ended])
        self.placement.append(placement)

    def record(self, jobs: list[Job], node_name: list[str], end_s: float) -> Record:
        arr = {k: np.frombuffer(getattr(self, k), dtype=d) if len(getattr(self, k)) else
               np.zeros(0, dtype=d) for k, d in (("job", np.int64), ("attempt", np.int64),
                                                  ("pool", np.int64), ("gpus", np.int64),
                                                  ("start_s", np.float64),
                                                  ("end_s", np.float64), ("ended", np.int8))}
        return Record(**arr, job_tenant=[j.tenant.name for j in jobs],
                      job_tier=[j.tenant.tier.value for j in jobs],
                      job_name=[j.name for j in jobs], end_of_record_s=end_s,
                      nodes=_NodeNames(self.placement, node_name))


class _NodeNames:
    """Segments' node names, made when read (a million segments need not carry strings)."""

    def __init__(self, placements: list, node_name: list[str]):
        self.placements, self.node_name = placements, node_name

    def __len__(self) -> int:
        return len(self.placements)

    def __getitem__(self, k: int) -> list[str]:
        return [self.node_name[n] for n, _ in self.placements[k]]


@dataclass
class SimOutcome:
    jobs: list[Job]
    timeline: Timeline
    segments: Segments
    cycle_s: array  # wall seconds per scheduling cycle (measurement, not a result)
    end_s: float


class Simulator:
    def __init__(self, scheduler: Scheduler, jobs: list[Job],
                 progress: Callable[[int], None] | None = None,
                 failures: FailureModel | None = None):
        self.scheduler = scheduler
        self.jobs = jobs  # sorted by submit_s
        self.progress = progress
        self.failures = failures

    def run(self) -> SimOutcome:
        # The loop allocates many small tuples and no reference cycles; the cyclic garbage
        # collector would rescan the million-object heap of jobs over and over. Pause it.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if was_enabled:
                gc.enable()

    def _run(self) -> SimOutcome:
        sched = self.scheduler
        cluster = sched.cluster
        jobs = self.jobs
        failures = self.failures
        heap: list[tuple] = []
        seq = 0
        timeline = Timeline()
        segments = Segments()
        index = {id(job): i for i, job in enumerate(jobs)}
        started_at: dict[int, float] = {}  # job index -> start of its current run
        cycle_s = array("d")
        perf = time.perf_counter
        n, i = len(jobs), 0
        wakeup_at = None
        done = 0
        report_every = max(1, n // 200)
        now = 0.0
        last_s = 0.0  # the last instant something happened: the run's end (a wake-up that
        # outlives the work, a stale LAS demotion say, is not part of the run)
        while i < n or heap:
            now = jobs[i].submit_s if i < n else heap[0][0]
            if heap and heap[0][0] < now:
                now = heap[0][0]
            happened = False
            while heap and heap[0][0] == now:
                _, kind, _, job, epoch = heapq.heappop(heap)
                if kind == FINISH and job.epoch == epoch and job.state is JobState.RUNNING:
                    k = index[id(job)]
                    segments.add(k, job.epoch, job.pool.index, job.gpus, job.placement,
                                 started_at.pop(k), now, "succeeded")
                    sched.finish(job, now)
                    done += 1
                    happened = True
                elif kind == FAIL and job.epoch == epoch and job.state is JobState.RUNNING:
                    k = index[id(job)]
                    segments.add(k, job.epoch, job.pool.index, job.gpus, job.placement,
                                 started_at.pop(k), now, "failed")
                    sched.fail(job, now)
                    happened = True
                elif kind == WAKEUP:
                    wakeup_at = None
            while i < n and jobs[i].submit_s == now:
                if sched.submit(jobs[i], now) is not None:
                    done += 1
                i += 1
                happened = True
            t0 = perf()
            decisions = sched.cycle(now)
            cycle_s.append(perf() - t0)
            for d in decisions:  # in order: a job preempted then restarted in one cycle
                job = d.job
                if d.kind == "start":
                    started_at[index[id(job)]] = now
                    seq += 1
                    heapq.heappush(heap, (job.end_s, FINISH, seq, job, job.epoch))
                    if failures is not None:
                        fail_s = now + failures.next_failure_s(job.gpus)
                        if fail_s < job.end_s:
                            seq += 1
                            heapq.heappush(heap, (fail_s, FAIL, seq, job, job.epoch))
                elif d.kind in ("preempt", "fail"):
                    k = index[id(job)]
                    segments.add(k, d.attempt, d.pool.index, job.gpus, d.placement,
                                 started_at.pop(k), now,
                                 "failed" if d.kind == "fail" else "preempted")
            wake = sched.next_wakeup()
            if wake is not None and wake > now and wake != wakeup_at:
                wakeup_at = wake
                seq += 1
                heapq.heappush(heap, (wake, WAKEUP, seq, None, 0))
            if not (happened or decisions):
                continue  # a wake-up that changed nothing: not a point of the timeline
            last_s = now
            timeline.t_s.append(now)
            timeline.allocated_gpus.append(cluster.allocated_gpus)
            timeline.waiting_jobs.append(sched.n_waiting + sched.n_deferred)
            timeline.fragmented_gpus.append(self._fragmented())
            if self.progress is not None and done >= report_every:
                self.progress(done)
                done = 0
        if self.progress is not None and done:
            self.progress(done)
        return SimOutcome(jobs, timeline, segments, cycle_s, last_s)

    def _fragmented(self) -> int:
        """Idle GPUs that no waiting job can use: all free GPUs, when there are enough of
        them for the smallest waiting gang but no pool can place it."""
        sched = self.scheduler
        cluster = sched.cluster
        if not sched.n_waiting or not cluster.free_gpus:
            return 0
        smallest = min(sched.waiting_gpus)
        if cluster.free_gpus < smallest:
            return 0  # too few, not badly placed
        for pool in cluster.pools:
            if pool.free_gpus >= smallest and cluster.place(pool, smallest) is not None:
                return 0
        return cluster.free_gpus
