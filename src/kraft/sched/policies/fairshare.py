"""Fair share: the tenant that has used least of its share goes first.

Usage is GPU-seconds with exponential decay (half-life 7 days, Slurm's default
PriorityDecayHalfLife), divided by the tenant's weight. Within a tenant, jobs go in submission
order. The core backfills around the first job that does not fit, as Slurm does with its
multifactor priority.
"""

import math
from collections.abc import Iterator
from itertools import chain

from kraft.sched.job import Job, TenantState
from kraft.sched.policy import Fill, Policy, register

SLURM_DEFAULT_HALF_LIFE_S = 7 * 86400.0


@register
class FairShare(Policy):
    name = "fairshare"
    fill = Fill.BACKFILL

    def __init__(self, half_life_s: float = SLURM_DEFAULT_HALF_LIFE_S):
        super().__init__()
        if half_life_s <= 0:
            raise ValueError(f"fairshare half_life_s must be > 0, got {half_life_s}")
        self.decay_per_s = math.log(2) / half_life_s
        self.tenants: dict[str, TenantState] = {}
        self.last_s: float | None = None

    def enqueue(self, job: Job, now: float) -> None:
        self.tenants.setdefault(job.tenant.name, job.tenant)

    def dequeue(self, job: Job) -> None:
        pass  # the core keeps each tenant's waiting jobs; nothing of our own to drop

    def tick(self, now: float) -> None:
        # dU/dt = running GPUs - decay * U, solved exactly over the interval (GPUs constant).
        if self.last_s is not None and now > self.last_s:
            f = math.exp(-self.decay_per_s * (now - self.last_s))
            for t in self.tenants.values():
                t.usage_gpu_s = t.usage_gpu_s * f + t.running_gpus * (1 - f) / self.decay_per_s
        self.last_s = now

    def on_start(self, job: Job, now: float) -> None:
        self.tenants.setdefault(job.tenant.name, job.tenant)

    def order(self, now: float) -> Iterator[Job]:  # lazy: the core may stop early
        ranked = sorted((t for t in self.tenants.values() if t.waiting),
                        key=lambda t: (t.usage_gpu_s / t.weight, -t.weight, t.name))
        return chain.from_iterable(t.waiting.values() for t in ranked)
