"""Shortest remaining time first, preemptive, on the known run times: an oracle, useful as a
bound on what any policy that does not know run times can reach."""

from collections.abc import Iterator

from sortedcontainers import SortedList

from kraft.sched.job import Job
from kraft.sched.policy import Fill, SortedQueue, register


@register
class Srtf(SortedQueue):
    name = "srtf"
    fill = Fill.GREEDY
    preemptive = True

    def __init__(self):
        super().__init__()
        # Running jobs by expected end: remaining time now is end - now, so this order is
        # the order of remaining times and never needs re-keying.
        self.running: SortedList = SortedList(key=lambda j: (j.end_s, j.id))

    def key(self, job: Job, now: float) -> tuple:
        return (job.remaining_s, job.order_s, job.id)

    def on_start(self, job: Job, now: float) -> None:
        self.running.add(job)

    def on_stop(self, job: Job, now: float) -> None:
        self.running.remove(job)

    def victims(self, job: Job, now: float) -> Iterator[Job]:
        # Only jobs that would still run longer than `job` even after it pays its restart.
        bar = now + job.remaining_s + job.restart_cost_s
        for victim in reversed(self.running):
            if victim.end_s <= bar:
                return
            yield victim
