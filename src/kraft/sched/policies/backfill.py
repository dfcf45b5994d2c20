"""Priority by tier, then age, with EASY backfill (as Slurm's sched/backfill does).

The first job that does not fit gets a reservation at the earliest time enough GPUs free up;
later jobs may start now only if they end before it or use GPUs it will not need. The core
scans at most `depth` jobs past the reservation (Slurm's bf_max_job_test).
"""

from kraft.sched.job import Job
from kraft.sched.policy import Fill, SortedQueue, register


@register
class Backfill(SortedQueue):
    name = "backfill"
    fill = Fill.BACKFILL

    def key(self, job: Job, now: float) -> tuple:
        return (job.tenant.tier_rank, job.order_s, job.id)
