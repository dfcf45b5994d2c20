"""The one interface every scheduling policy implements, and the registry of policies.

A policy is a queue discipline: it keeps the waiting jobs in its order and, if preemptive,
names running jobs it would rather stop. Everything else -- admission, quotas, reservations,
gang placement, backfill reservations, the mechanics of preemption -- lives once in the
scheduler core, so every policy gets it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any, ClassVar

from sortedcontainers import SortedList

from kraft.sched.job import Job


class Fill(StrEnum):
    """How the core walks the policy's order when a job does not fit."""

    STRICT = "strict"  # stop at the first job that does not fit (FIFO)
    BACKFILL = "backfill"  # reserve for that job; start later ones that do not delay it (EASY)
    GREEDY = "greedy"  # skip it and keep going (up to the scan depth)


class Policy(ABC):
    name: ClassVar[str]
    fill: ClassVar[Fill]
    preemptive: ClassVar[bool] = False

    def __init__(self, **params: Any):
        if params:
            raise ValueError(f"policy {self.name!r} takes no parameters {sorted(params)}")

    @abstractmethod
    def enqueue(self, job: Job, now: float) -> None:
        """A job starts waiting (on arrival or after preemption)."""

    @abstractmethod
    def dequeue(self, job: Job) -> None:
        """A waiting job leaves the queue (started, cancelled)."""

    @abstractmethod
    def order(self, now: float) -> Iterable[Job]:
        """Waiting jobs, most urgent first. Consumed lazily; the queue is not changed while
        it is being walked."""

    def on_start(self, job: Job, now: float) -> None:
        """A job started running."""

    def on_stop(self, job: Job, now: float) -> None:
        """A running job stopped (finished or preempted)."""

    def tick(self, now: float) -> None:
        """Bring time-dependent state up to `now`; called once at the start of a cycle."""

    def victims(self, job: Job, now: float) -> Iterator[Job]:
        """Running jobs this policy ranks below `job`, least valuable first (preemptive
        policies only)."""
        return iter(())

    def next_wakeup(self) -> float | None:
        """The earliest time at which this policy may decide differently with no new event."""
        return None


class SortedQueue(Policy):
    """A policy whose order is a static key per waiting job (computed on enqueue)."""

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.queue: SortedList = SortedList(key=lambda j: j.key)

    @abstractmethod
    def key(self, job: Job, now: float) -> tuple:
        """Sort key; must end with the job id so that order is total and deterministic."""

    def enqueue(self, job: Job, now: float) -> None:
        job.key = self.key(job, now)
        self.queue.add(job)

    def dequeue(self, job: Job) -> None:
        self.queue.remove(job)

    def order(self, now: float) -> Iterable[Job]:
        return self.queue


REGISTRY: dict[str, type[Policy]] = {}


def register(cls: type[Policy]) -> type[Policy]:
    if cls.name in REGISTRY:
        raise ValueError(f"policy {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def make_policy(name: str, **params: Any) -> Policy:
    import kraft.sched.policies  # noqa: F401  (registers the bundled policies)

    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return cls(**params)
