"""Shortest job first, non-preemptive, on the known run times: the baseline other simulators
(Tiresias, Gavel, Blox) compare against. A started job runs to its end; the queue is walked
greedily, so a long job waits while short ones that fit go past it (no reservation: it can
starve under steady short arrivals, as the textbook SJF does)."""

from kraft.sched.job import Job
from kraft.sched.policy import Fill, SortedQueue, register


@register
class Sjf(SortedQueue):
    name = "sjf"
    fill = Fill.GREEDY

    def key(self, job: Job, now: float) -> tuple:
        return (job.remaining_s, job.order_s, job.id)
