"""First in, first out: submission order, and nothing passes a job that does not fit."""

from kraft.sched.job import Job
from kraft.sched.policy import Fill, SortedQueue, register


@register
class Fifo(SortedQueue):
    name = "fifo"
    fill = Fill.STRICT

    def key(self, job: Job, now: float) -> tuple:
        return (job.order_s, job.id)
