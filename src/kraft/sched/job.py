"""Runtime records the scheduler works on: jobs and tenants.

Plain slotted classes rather than pydantic models: the simulator creates a million of them and
the scheduler touches their fields in its hot loop.
"""

from __future__ import annotations

from enum import StrEnum

from kraft.cluster.state import Placement, Pool
from kraft.spec.models import TenantSpec, Tier


class JobState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class TenantState:
    """A tenant's spec plus what it uses now."""

    __slots__ = ("spec", "name", "tier", "tier_rank", "reserved_gpus", "quota_gpus", "weight",
                 "running_gpus", "guaranteed_gpus", "waiting", "usage_gpu_s")

    def __init__(self, spec: TenantSpec):
        self.spec = spec
        self.name = spec.name
        self.tier: Tier = spec.tier
        self.tier_rank = spec.tier.rank
        self.reserved_gpus = spec.reserved_gpus
        self.quota_gpus = spec.quota_gpus
        self.weight = spec.weight
        self.running_gpus = 0
        self.guaranteed_gpus = 0  # GPUs running under the reservation
        self.waiting: dict[int, Job] = {}  # waiting jobs in submission order
        self.usage_gpu_s = 0.0  # decayed usage, kept by the fair-share policy


class Job:
    """A gang job. Times are seconds on whatever clock the body keeps (virtual or wall)."""

    __slots__ = ("id", "name", "tenant", "gpus", "gpu_model", "submit_s", "duration_s",
                 "time_limit_s", "checkpoint_interval_s", "restart_cost_s", "preemptible",
                 "state", "progress_s", "executed_s", "start_s", "end_s", "penalty_s",
                 "first_start_s", "finish_s", "placement", "pool", "guaranteed", "preemptions",
                 "failures", "lost_gpu_s", "epoch", "reason", "key", "pools", "estimate_s",
                 "flex_window_s", "order_s")

    def __init__(self, id: int, tenant: TenantState, gpus: int, submit_s: float,
                 duration_s: float, *, name: str = "", gpu_model: str | None = None,
                 time_limit_s: float | None = None, checkpoint_interval_s: float | None = None,
                 restart_cost_s: float = 0.0, preemptible: bool = True,
                 flex_window_s: float = 0.0):
        self.id = id
        self.name = name or f"job-{id}"
        self.tenant = tenant
        self.gpus = gpus
        self.gpu_model = gpu_model
        self.submit_s = submit_s
        self.order_s = submit_s  # its place in line: submission, unless the operator tops it
        self.duration_s = duration_s  # work to do, in seconds of uninterrupted running
        self.time_limit_s = time_limit_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.restart_cost_s = restart_cost_s
        self.preemptible = preemptible
        self.flex_window_s = flex_window_s  # may start up to this long after submission
        self.state = JobState.WAITING
        self.progress_s = 0.0  # checkpointed work, kept across preemptions
        self.executed_s = 0.0  # wall seconds run, all attempts (attained service / GPUs)
        self.start_s = -1.0
        self.end_s = -1.0  # expected end of the current attempt
        self.penalty_s = 0.0  # restart cost paid by the current attempt
        self.first_start_s = -1.0
        self.finish_s = -1.0
        self.placement: Placement = ()
        self.pool: Pool | None = None
        self.guaranteed = False  # started under its tenant's reservation
        self.preemptions = 0
        self.failures = 0  # hardware interruptions (twin only)
        self.lost_gpu_s = 0.0
        self.epoch = 0  # bumps on every start, so stale finish events can be told apart
        self.reason = "waiting: queued"
        self.key: tuple = ()  # the policy's queue key, set on enqueue
        self.pools: tuple[Pool, ...] = ()  # pools it may run in, set on admission
        # Run time the scheduler may plan with (set on enqueue): the user's time limit, else
        # the known remaining duration.
        self.estimate_s = 0.0

    @property
    def remaining_s(self) -> float:
        return self.duration_s - self.progress_s

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.tenant.name}, {self.gpus} GPUs, {self.state.value})"
