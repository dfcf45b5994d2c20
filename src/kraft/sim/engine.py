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
    """Every stretch a job ran without interruption: the input of the energy books."""

    job: array = field(default_factory=lambda: array("l"))  # index into SimOutcome.jobs
    pool: array = field(default_factory=lambda: array("l"))
    start_s: array = field(default_factory=lambda: array("d"))
    end_s: array = field(default_factory=lambda: array("d"))

    def add(self, job: int, pool: int, start_s: float, end_s: float) -> None:
        self.job.append(job)
        self.pool.append(pool)
        self.start_s.append(start_s)
        self.end_s.append(end_s)


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
        while i < n or heap:
            now = jobs[i].submit_s if i < n else heap[0][0]
            if heap and heap[0][0] < now:
                now = heap[0][0]
            while heap and heap[0][0] == now:
                _, kind, _, job, epoch = heapq.heappop(heap)
                if kind == FINISH and job.epoch == epoch and job.state is JobState.RUNNING:
                    k = index[id(job)]
                    segments.add(k, job.pool.index, started_at.pop(k), now)
                    sched.finish(job, now)
                    done += 1
                elif kind == FAIL and job.epoch == epoch and job.state is JobState.RUNNING:
                    k = index[id(job)]
                    segments.add(k, job.pool.index, started_at.pop(k), now)
                    sched.fail(job, now)
                elif kind == WAKEUP:
                    wakeup_at = None
            while i < n and jobs[i].submit_s == now:
                if sched.submit(jobs[i], now) is not None:
                    done += 1
                i += 1
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
                elif d.kind == "preempt":
                    k = index[id(job)]
                    segments.add(k, d.pool.index, started_at.pop(k), now)
            wake = sched.next_wakeup()
            if wake is not None and wake > now and wake != wakeup_at:
                wakeup_at = wake
                seq += 1
                heapq.heappush(heap, (wake, WAKEUP, seq, None, 0))
            timeline.t_s.append(now)
            timeline.allocated_gpus.append(cluster.total_gpus - cluster.free_gpus)
            timeline.waiting_jobs.append(sched.n_waiting + sched.n_deferred)
            timeline.fragmented_gpus.append(self._fragmented())
            if self.progress is not None and done >= report_every:
                self.progress(done)
                done = 0
        if self.progress is not None and done:
            self.progress(done)
        return SimOutcome(jobs, timeline, segments, cycle_s, now)

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
