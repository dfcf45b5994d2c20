"""The brain: admission, queue, placement, preemption. No clock, no I/O, no mode flag."""

from kraft.sched.job import Job, JobState, TenantState
from kraft.sched.policy import REGISTRY, Fill, Policy, make_policy
from kraft.sched.scheduler import Decision, Scheduler, SchedulerConfig

__all__ = ["REGISTRY", "Decision", "Fill", "Job", "JobState", "Policy", "Scheduler",
           "SchedulerConfig", "TenantState", "make_policy"]
