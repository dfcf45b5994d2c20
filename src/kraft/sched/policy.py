"""The one interface every scheduling policy implements, and the registry of policies.

A policy is a queue discipline: it keeps the waiting jobs in its order and, if preemptive,
names running jobs it would rather stop. Everything else -- admission, quotas, reservations,
gang placement, backfill reservations, the mechanics of preemption -- lives once in the
scheduler core, so every policy gets it.
"""

from __future__ import annotations

import inspect
import json
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
            raise TypeError(f"policy {self.name!r} takes no parameters {sorted(params)}")

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


def policy_names() -> list[str]:
    """The registered policies' names, bundled ones included, sorted."""
    import kraft.sched.policies  # noqa: F401  (registers the bundled policies)

    return sorted(REGISTRY)


def _split_top(text: str) -> list[str]:
    """`text` split on the commas outside brackets."""
    depth, start, items = 0, 0, []
    for i, c in enumerate(text):
        depth += c in "[{"
        depth -= c in "]}"
        if c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    return [*items, text[start:]]


def split_policies(text: str) -> list[str]:
    """A comma-separated list of policy specs, where a spec's own parameters are separated by
    commas too: `fifo,las:thresholds_gpu_s=[1800,7200],fill=greedy,srtf` is three specs (an
    item holding `=` but no `:` belongs to the spec before it)."""
    specs: list[str] = []
    for item in (x.strip() for x in _split_top(text)):
        if not item:
            continue
        if specs and "=" in item and ":" not in item.split("=", 1)[0]:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def parse_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """`name` or `name:key=value,key=value` (values are JSON where they parse, else text):
    the form a sweep's `policies:` list and `--policy` take, e.g.
    `las:thresholds_gpu_s=[1800,7200]` or `fifo:fill=greedy`."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in _split_top(rest))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"policy {spec!r}: give parameters as {name}:KEY=VALUE[,KEY=VALUE]")
        params[key.strip()] = parse_value(value.strip())
    return name.strip(), params


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def make_policy(spec: str, **params: Any) -> Policy:
    """The policy `spec` names (see parse_policy), with `params` over the spec's own. Every
    policy takes `fill` (strict, backfill or greedy) to override how the core walks its
    order, e.g. a non-blocking greedy FIFO."""
    name, own = parse_policy(spec)
    params = {**own, **params}
    if name not in policy_names():
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")
    cls = REGISTRY[name]
    fill = params.pop("fill", None)
    try:
        policy = cls(**params)
    except TypeError:
        known = [p for p in inspect.signature(cls).parameters if p != "params"]
        raise ValueError(f"policy {name} takes {', '.join(known + ['fill'])}; "
                         f"got {', '.join(sorted(params))}") from None
    if fill is not None:
        try:
            policy.fill = Fill(fill)
        except ValueError:
            raise ValueError(f"policy {name}: fill {fill!r}? Use "
                             f"{', '.join(f.value for f in Fill)}") from None
    return policy
