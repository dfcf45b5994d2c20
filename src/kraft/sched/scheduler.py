"""The scheduling core shared by the simulator and the live service.

The body (simulator or control plane) calls `submit`, `finish`, `cancel` and `cycle(now)`
and carries out the decisions returned. The scheduler reads no clock and does no I/O: time
comes in as an argument. On submission, a flexible job may be deferred to a planned start
(`shift`). Within a cycle:

0. deferred jobs whose planned start has come join the queue;
1. reservations: a reserved tenant's queue head that fits in its unused reservation starts
   now, preempting spot, then on-demand, then borrowed work if it must;
2. fill: the policy's order is walked; jobs that fit start; the first that does not either
   stops the walk (strict), gets an EASY reservation (backfill) or is skipped (greedy);
3. preemptive policies may then stop running jobs they rank below the first waiting ones.

Placement filters (residency, GPU model, site power budget) hold everywhere; a weigher
(`prefer`) only orders the allowed pools.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from sortedcontainers import SortedList

from kraft.catalog import CATALOG
from kraft.cluster.state import ClusterState, Placement, Pool
from kraft.sched.job import Job, JobState, TenantState
from kraft.sched.policy import Fill, Policy
from kraft.sched.shift import SignalShift
from kraft.sched.weighers import Weigher
from kraft.spec.models import TenantSpec, Tier


@dataclass(frozen=True)
class SchedulerConfig:
    scan_depth: int = 100  # jobs examined past the first that does not fit (bf_max_job_test)
    preempt_depth: int = 8  # waiting jobs per cycle that may preempt (preemptive policies)
    max_victims: int = 64  # running jobs a policy may try as victims for one waiting job
    # (a reservation may try every preemptible running job: its guarantee comes first)


class Decision(NamedTuple):
    kind: str  # "start" | "preempt" | "fail" (its node was lost) | "reject"
    job: Job
    reason: str
    pool: Pool | None = None  # where a started job runs, or a preempted one ran
    placement: Placement = ()  # its nodes and GPUs there
    attempt: int = 0  # which start of the job (1 for the first)


_BIG = 1 << 62
_NO_ROOM = "waiting: no placement for its gang among the free GPUs"
_WOULD_DELAY = "waiting: would delay the job holding the backfill reservation"

# Victim classes for reservations: spot first, then on-demand, then reserved tenants' jobs
# running beyond their reservation ("borrowed").
_VICTIM_CLASS = {Tier.SPOT: 0, Tier.ON_DEMAND: 1, Tier.RESERVED: 2}


class Scheduler:
    def __init__(self, cluster: ClusterState, tenants: Iterable[TenantState], policy: Policy,
                 config: SchedulerConfig | None = None, shift: SignalShift | None = None,
                 prefer: Weigher | None = None):
        self.cluster = cluster
        self.policy = policy
        self.config = config or SchedulerConfig()
        self.shift = shift  # temporal shifting of flexible jobs, if any
        self.deferred: list[tuple[float, int, Job]] = []  # heap: (planned start, id, job)
        # Site weigher: among allowed pools, try the best-ranked site first (lowest carbon or
        # price this hour, or lowest latency to the tenant). None: pack (tightest fit).
        self.prefer = prefer
        self._ranked: dict[tuple, tuple[Pool, ...]] = {}
        self._now = 0.0
        self.out_why: dict[int, set[str]] = {}  # node -> why it is out (operator, maintenance)
        # preemptions by cause: "reservation" (reclaiming GPUs lent to other tenants), the
        # policy's name (its own ranking), "node out of service", "operator"
        self.preempted_by: Counter[str] = Counter()
        self.windows: list[tuple[float, float, int]] = []  # maintenance: (start, end, node)
        self.tenants = {t.name: t for t in tenants}
        self.reserved = [t for t in self.tenants.values() if t.reserved_gpus > 0]
        self.running: dict[int, Job] = {}
        self.waiting_gpus: Counter[int] = Counter()  # gang sizes waiting, for fragmentation
        self.n_waiting = 0
        # Running jobs by expected end, per pool: the EASY reservation's shadow time.
        self.by_end = [SortedList(key=lambda j: (j.end_s, j.id)) for _ in cluster.pools]
        # Preemptible, non-guaranteed running jobs by victim class, in start order.
        self.borrowers: list[dict[int, Job]] = [{} for _ in _VICTIM_CLASS]
        self._pools_cache: dict[tuple[str, str | None], tuple[Pool, ...]] = {}
        self._pool_sets: dict[tuple[Pool, ...], tuple[Pool, ...]] = {}

    # ---- admission -------------------------------------------------------------------------

    def pools_for(self, tenant: TenantState, gpu_model: str | None) -> tuple[Pool, ...]:
        key = (tenant.name, gpu_model)
        pools = self._pools_cache.get(key)
        if pools is None:
            residency = tenant.spec.residency
            pools = tuple(p for p in self.cluster.pools if residency.allows(p.site)
                          and (gpu_model is None or p.model == gpu_model))
            # Interned: tenants with the same allowed pools share one tuple, so the cycle
            # can remember placement failures per pool set by identity.
            pools = self._pool_sets.setdefault(pools, pools)
            self._pools_cache[key] = pools
        return pools

    def admission_error(self, job: Job) -> str | None:
        """Why `job` can never run here, or None."""
        t = job.tenant
        if job.gpu_model is not None and job.gpu_model not in CATALOG:
            return f"rejected: unknown GPU model {job.gpu_model!r}"
        residency = t.spec.residency
        if not any(residency.allows(s) for s in self.cluster.fleet.sites):
            return (f"rejected: residency {residency.describe()} of tenant {t.name!r}: "
                    f"no site of fleet {self.cluster.fleet.name!r} qualifies")
        pools = self.pools_for(t, job.gpu_model)
        if not pools:
            return (f"rejected: no site allowed by residency {residency.describe()} has "
                    f"{job.gpu_model} GPUs")
        largest = max(pools, key=lambda p: p.total_gpus)
        if job.gpus > largest.total_gpus:
            return (f"rejected: gang of {job.gpus} GPUs is larger than any allowed pool "
                    f"(largest: {largest.total_gpus} {largest.model} at {largest.site.name})")
        if all(job.gpus * p.extra_w_per_gpu > p.power.budget_w - p.power.idle_w for p in pools):
            p = pools[0]
            return (f"rejected: gang of {job.gpus} GPUs needs "
                    f"{job.gpus * p.extra_w_per_gpu / 1e3:.1f} kW busy; site {p.site.name}'s "
                    f"power budget leaves {(p.power.budget_w - p.power.idle_w) / 1e3:.1f} kW "
                    f"above idle")
        if t.quota_gpus is not None and job.gpus > t.quota_gpus:
            return f"rejected: gang of {job.gpus} GPUs exceeds tenant quota {t.quota_gpus}"
        return None

    def submit(self, job: Job, now: float) -> Decision | None:
        """Admit or reject a new job. Returns a reject decision, or None if it now waits."""
        reason = self.admission_error(job)
        if reason is not None:
            job.state = JobState.REJECTED
            job.reason = reason
            return Decision("reject", job, reason)
        job.pools = self.pools_for(job.tenant, job.gpu_model)
        if self.shift is not None and job.flex_window_s > 0:
            start_s, why = self.shift.plan(job, now)
            if start_s > now:
                job.state = JobState.WAITING
                job.reason = why
                heapq.heappush(self.deferred, (start_s, job.id, job))
                return None
            self._enqueue(job, now)
            job.reason = why  # not deferred: why not, said as the twin says it
            return None
        self._enqueue(job, now)
        return None

    # ---- events from the body --------------------------------------------------------------

    def finish(self, job: Job, now: float) -> None:
        """A running job completed its work."""
        self._stop(job, now)
        job.progress_s = job.duration_s
        job.state = JobState.DONE
        job.finish_s = now
        job.reason = "done"

    def cancel(self, job: Job, now: float) -> None:
        if job.state is JobState.RUNNING:
            self._stop(job, now)
        elif job.state is JobState.WAITING and job.id in job.tenant.waiting:
            self._dequeue(job)
        job.state = JobState.CANCELLED  # a deferred one is dropped when its time comes
        job.reason = "cancelled"

    def add_tenant(self, tenant: TenantState) -> None:
        """A tenant created while the service runs."""
        self.tenants[tenant.name] = tenant
        if tenant.reserved_gpus > 0:
            self.reserved.append(tenant)
        self._pools_cache.clear()

    def update_tenant(self, spec: TenantSpec) -> None:
        """A tenant's spec changed while the service runs: its tier, reservation, quota,
        weight and residency hold for new starts from the next cycle; running work is left
        alone (a lowered reservation or quota stops new starts, it preempts nothing)."""
        t = self.tenants.get(spec.name)
        if t is None:
            return
        t.spec, t.tier, t.tier_rank = spec, spec.tier, spec.tier.rank
        t.reserved_gpus, t.quota_gpus, t.weight = spec.reserved_gpus, spec.quota_gpus, spec.weight
        self.reserved = [x for x in self.tenants.values() if x.reserved_gpus > 0]
        self._pools_cache.clear()
        self._ranked.clear()
        for job in t.waiting.values():
            job.pools = self.pools_for(t, job.gpu_model)

    def adopt(self, job: Job, placement: Placement, pool: Pool, start_s: float) -> None:
        """A job found running after a restart: book its GPUs where they are."""
        job.pools = self.pools_for(job.tenant, job.gpu_model)
        self._start(job, placement, pool, start_s, [], guaranteed=False)

    def next_wakeup(self) -> float | None:
        edge = None  # a maintenance window's opening or close is an event too
        if self.windows:  # (the twin asks after every event: nothing to pay without windows)
            now = self._now
            edge = min((t for s, e, _ in self.windows for t in (s, e) if t > now), default=None)
        times = [t for t in (self.policy.next_wakeup(), edge,
                             self.deferred[0][0] if self.deferred else None) if t is not None]
        return min(times) if times else None

    @property
    def n_deferred(self) -> int:
        return len(self.deferred)

    # ---- the cycle -------------------------------------------------------------------------

    def cycle(self, now: float) -> list[Decision]:
        out: list[Decision] = []
        self._now = now
        if self.windows:
            self._maintenance(now)
        while self.deferred and self.deferred[0][0] <= now:
            job = heapq.heappop(self.deferred)[2]
            if job.state is JobState.WAITING:
                self._enqueue(job, now)
        self.policy.tick(now)
        if self.reserved:
            self._reservations(now, out)
        if self.n_waiting and self.cluster.free_gpus:
            self._fill(now, out)
        if self.policy.preemptive and self.n_waiting:
            self._preempt_for_policy(now, out)
        return out

    def _reservations(self, now: float, out: list[Decision]) -> None:
        for t in self.reserved:
            while t.waiting:
                job = next(iter(t.waiting.values()))
                if t.guaranteed_gpus + job.gpus > t.reserved_gpus:
                    break
                pools = job.pools
                found = self._place(job, pools)
                if found is None:
                    found = self._preempt_to_place(job, pools, self._reservation_victims(),
                                                   now, out, "reservation", limit=None)
                if found is None:
                    job.reason = (f"waiting: reservation of {t.name!r} cannot be met now: "
                                  f"the GPUs are held by work that may not be preempted")
                    break
                self._dequeue(job)
                self._start(job, *found, now, out, guaranteed=True)

    def _reservation_victims(self) -> Iterable[Job]:
        for cls in self.borrowers:
            yield from reversed(cls.values())  # latest started loses least work

    def _fill(self, now: float, out: list[Decision]) -> None:
        cluster = self.cluster
        started: list[Job] = []
        # Within a cycle capacity only shrinks, so a gang size that found no placement in a
        # set of pools fails again for every later job of that size or larger.
        failed_size: dict[int, int] = {}
        smallest = min(self.waiting_gpus)  # no waiting gang is smaller
        order = iter(self.policy.order(now))
        head = None
        for job in order:  # start jobs in order until one does not fit: the head
            if cluster.free_gpus < smallest:
                break
            if self._over_quota(job):
                continue
            found = self._place(job, job.pools)
            if found is None:
                head = job
                break
            started.append(job)
            self._start(job, *found, now, out, guaranteed=False)
        if head is not None:
            failed_size[id(head.pools)] = head.gpus
            fill = self.policy.fill
            if fill is Fill.STRICT:
                head.reason = self._no_room(head, head.pools) + "; jobs behind it wait (fifo)"
            elif self._settled(failed_size, smallest):
                head.reason = self._no_room(head, head.pools)
            else:
                self._fill_behind(head, islice(order, self.config.scan_depth), fill,
                                  failed_size, smallest, started, now, out)
        for job in started:
            self._dequeue(job)

    def _fill_behind(self, head: Job, candidates: Iterable[Job], fill: Fill,
                     failed_size: dict[int, int], smallest: int, started: list[Job],
                     now: float, out: list[Decision]) -> None:
        """Jobs past the head: greedy starts whatever fits; backfill only what does not delay
        the head's reservation. The hot loop of a deep queue: cheapest tests first."""
        cluster = self.cluster
        backfill = fill is Fill.BACKFILL
        if backfill:
            shadow_s, extra_gpus, head_pool = self._shadow(head, head.pools, now)
            horizon_s = shadow_s - now
            head.reason = (f"waiting: next to start, needs {head.gpus} GPUs; expected to "
                           f"start within {_duration(horizon_s)}")
        else:
            extra_gpus, head_pool, horizon_s = 0, None, math.inf
            head.reason = self._no_room(head, head.pools)
        failed = failed_size.get
        for job in candidates:
            free = cluster.free_gpus
            if free < smallest:
                break
            gpus = job.gpus
            pools = job.pools
            if gpus > free or gpus >= failed(id(pools), _BIG):
                job.reason = _NO_ROOM
                continue
            late = job.estimate_s > horizon_s
            if late and gpus > extra_gpus and head_pool in pools:
                job.reason = _WOULD_DELAY
                continue
            if self._over_quota(job):
                continue
            found = self._place(job, pools)
            if found is None:
                failed_size[id(pools)] = min(gpus, failed(id(pools), _BIG))
                job.reason = _NO_ROOM
                if self._settled(failed_size, smallest):
                    break
                continue
            if backfill and late and found[1] is head_pool:
                extra_gpus -= gpus
            started.append(job)
            self._start(job, *found, now, out, guaranteed=False)

    def _settled(self, failed_size: dict[int, int], smallest: int) -> bool:
        """True when not even the smallest waiting gang can be placed in any pool set."""
        return all(failed_size.get(id(p), _BIG) <= smallest for p in self._pool_sets)

    @staticmethod
    def _over_quota(job: Job) -> bool:
        t = job.tenant
        if t.quota_gpus is not None and t.running_gpus + job.gpus > t.quota_gpus:
            job.reason = f"waiting: tenant quota {t.running_gpus}/{t.quota_gpus} GPUs in use"
            return True
        return False

    def _preempt_for_policy(self, now: float, out: list[Decision]) -> None:
        cfg = self.config
        # Later jobs in the order rank lower, so they may preempt only a subset of what
        # earlier ones could: a size that failed fails again for them.
        failed_size: dict[int, int] = {}
        for job in list(islice(self.policy.order(now), cfg.preempt_depth)):
            pools = job.pools
            if job.gpus >= failed_size.get(id(pools), _BIG) or self._over_quota(job):
                continue
            found = self._place(job, pools)
            if found is None:
                victims = (v for v in self.policy.victims(job, now)
                           if v.preemptible and not v.guaranteed)
                found = self._preempt_to_place(job, pools, victims, now, out, self.policy.name,
                                               limit=cfg.max_victims)
            if found is None:
                failed_size[id(pools)] = min(job.gpus, failed_size.get(id(pools), _BIG))
            else:
                self._dequeue(job)
                self._start(job, *found, now, out, guaranteed=False)

    # ---- mechanisms ------------------------------------------------------------------------

    def _place(self, job: Job, pools: tuple[Pool, ...]) -> tuple[Placement, Pool] | None:
        """Best placement over the allowed pools, on nodes whose maintenance does not open
        before the job would end (its time limit, else its estimate)."""
        if not self.windows:
            return self._place_on(job, pools)
        now, up = self._now, self.cluster.node_up
        closing = {n for s, _, n in self.windows if now < s < now + job.estimate_s and up[n]}
        for n in closing:
            self.cluster.set_up(n, False)
        try:
            return self._place_on(job, pools)
        finally:
            for n in closing:
                self.cluster.set_up(n, True)

    def _place_on(self, job: Job, pools: tuple[Pool, ...]) -> tuple[Placement, Pool] | None:
        """Best placement over the allowed pools: the tightest single node, else the first
        pool that holds the gang."""
        gpus = job.gpus
        place = self.cluster.place
        if len(pools) == 1:
            placement = place(pools[0], gpus)
            return None if placement is None else (placement, pools[0])
        if self.prefer is not None:
            for pool in self._rank(pools, job):
                placement = place(pool, gpus)
                if placement is not None:
                    return placement, pool
            return None
        best, best_left = None, math.inf
        for pool in pools:
            placement = place(pool, gpus)
            if placement is None:
                continue
            if len(placement) > 1:
                return placement, pool
            left = self.cluster.node_free[placement[0][0]] - gpus
            if left < best_left:
                best, best_left = (placement, pool), left
        return best

    def _rank(self, pools: tuple[Pool, ...], job: Job) -> tuple[Pool, ...]:
        """Pools by the weigher's key for their site, best first (then fleet order)."""
        prefer, now, tenant = self.prefer, self._now, job.tenant
        key = (prefer.depends_on(tenant, now), id(pools))
        ranked = self._ranked.get(key)
        if ranked is None:
            if len(self._ranked) > 4096:
                self._ranked.clear()
            ranked = tuple(sorted(pools, key=lambda p: (prefer.key(p.site, tenant, now),
                                                        p.index)))
            self._ranked[key] = ranked
        return ranked

    def _preempt_to_place(self, job: Job, pools: tuple[Pool, ...], victims: Iterable[Job],
                          now: float, out: list[Decision], why: str, limit: int | None
                          ) -> tuple[Placement, Pool] | None:
        """Find the first victims (in the order given) whose GPUs, with the free ones, hold
        `job`; preempt just those and return the placement. Nothing changes if none do."""
        found = self._reclaim(job, pools, islice(victims, limit))
        if found is None:
            return None
        placement, pool, needed = found
        freed_w = sum(v.gpus * v.pool.extra_w_per_gpu for v in needed if v.pool.power is pool.power)
        if job.gpus * pool.extra_w_per_gpu > pool.power.headroom_w + freed_w:
            return None  # the GPUs would be free but the site's power budget would not hold
        reason = f"waiting: preempted for job {job.id} of {job.tenant.name!r} ({why})"
        self.preempted_by[why] += len(needed)
        for victim in needed:
            ran_in, ran_on, attempt = victim.pool, victim.placement, victim.epoch
            self._preempt(victim, now, reason)
            out.append(Decision("preempt", victim, reason, ran_in, ran_on, attempt))
        return placement, pool

    def _reclaim(self, job: Job, pools: tuple[Pool, ...], victims: Iterable[Job]
                 ) -> tuple[Placement, Pool, list[Job]] | None:
        """Pure what-if: walk victims, counting the GPUs each would free per node, until
        some node (one-node gangs) or enough whole nodes (larger gangs) would hold `job`."""
        node_free = self.cluster.node_free
        gpus = job.gpus
        gain: dict[int, int] = {}
        on_node: dict[int, list[Job]] = {}
        whole: dict[int, list[int]] = {}  # pool index -> nodes that victims would empty
        for victim in victims:
            pool = victim.pool
            if pool not in pools or victim is job:
                continue
            g = pool.gpus_per_node
            for node, k in victim.placement:
                gain[node] = gain.get(node, 0) + k
                on_node.setdefault(node, []).append(victim)
                if gpus <= g:
                    if node_free[node] + gain[node] >= gpus:
                        return ((node, gpus),), pool, on_node[node]
                elif node_free[node] + gain[node] == g:
                    emptied = whole.setdefault(pool.index, [])
                    emptied.append(node)
                    need = -(-gpus // g)
                    if len(emptied) + pool.idle_nodes >= need:
                        idle = self.cluster.pick_idle_nodes(
                            pool, min(pool.idle_nodes, need)) or []
                        nodes = (idle + emptied)[:need]
                        placement = tuple((n, g) for n in nodes[:-1]) + (
                            (nodes[-1], gpus - g * (need - 1)),)
                        needed = list(dict.fromkeys(v for n in nodes for v in on_node.get(n, ())))
                        return placement, pool, needed
        return None

    def _shadow(self, job: Job, pools: tuple[Pool, ...], now: float
                ) -> tuple[float, int, Pool | None]:
        """EASY reservation: the earliest time enough GPUs of one pool are free for `job`
        (counting GPUs, not their layout), and how many GPUs beyond it are free then."""
        best: tuple[float, int, Pool | None] = (math.inf, 0, None)
        for pool in pools:
            if pool.total_gpus < job.gpus:
                continue
            free = pool.free_gpus
            ends = self.by_end[pool.index]
            if free >= job.gpus:  # enough GPUs, badly laid out: next release may help
                when = ends[0].end_s if ends else now
                cand = (when, free - job.gpus, pool)
            else:
                cand = (math.inf, 0, pool)
                for r in ends:
                    free += r.gpus
                    if free >= job.gpus:
                        cand = (r.end_s, free - job.gpus, pool)
                        break
            if cand[0] < best[0]:
                best = cand
        return best

    def expected_start(self, job: Job, now: float) -> float | None:
        """When enough GPUs of one of its pools free up for `job`, by the running jobs'
        planned ends (time limits, else estimates): the EASY reservation of a head job. None
        if no planned end frees enough."""
        when = self._shadow(job, job.pools, now)[0]
        return None if math.isinf(when) else max(when, now)

    def _no_room(self, job: Job, pools: tuple[Pool, ...]) -> str:
        free = sum(p.free_gpus for p in pools)
        return (f"waiting: needs {job.gpus} GPUs in one pool; {free} free in "
                f"{len(pools)} allowed pool(s)")

    def _start(self, job: Job, placement: Placement, pool: Pool, now: float,
               out: list[Decision], guaranteed: bool) -> None:
        self.cluster.allocate(placement)
        job.placement = placement
        job.pool = pool
        job.state = JobState.RUNNING
        job.start_s = now
        job.penalty_s = job.restart_cost_s if job.preemptions else 0.0
        job.end_s = now + job.penalty_s + job.remaining_s * pool.slowdown
        if job.first_start_s < 0:
            job.first_start_s = now
        job.epoch += 1
        job.guaranteed = guaranteed
        job.reason = "running"
        t = job.tenant
        t.running_gpus += job.gpus
        if guaranteed:
            t.guaranteed_gpus += job.gpus
        elif job.preemptible:
            self.borrowers[_VICTIM_CLASS[t.tier]][job.id] = job
        self.running[job.id] = job
        self.by_end[pool.index].add(job)
        self.policy.on_start(job, now)
        why = f"started on {self.cluster.describe(placement)} at site {pool.site.name}"
        if self.prefer is not None and len(job.pools) > 1:
            sites = {p.site.name for p in job.pools}
            why += (f": {self.prefer.describe(pool.site, job.tenant, now)}, ranked first of "
                    f"{len(sites)} allowed sites ({', '.join(sorted(sites))}) by "
                    f"{self.prefer.name}")
        out.append(Decision("start", job, why, pool, placement, job.epoch))

    def _stop(self, job: Job, now: float) -> None:
        self.cluster.release(job.placement)
        job.executed_s += now - job.start_s
        t = job.tenant
        t.running_gpus -= job.gpus
        if job.guaranteed:
            t.guaranteed_gpus -= job.gpus
        else:  # every class: the tenant's tier may have changed while the job ran
            for borrowed in self.borrowers:
                borrowed.pop(job.id, None)
        del self.running[job.id]
        self.by_end[job.pool.index].remove(job)
        self.policy.on_stop(job, now)
        job.placement = ()

    def fail(self, job: Job, now: float) -> None:
        """The body saw a running job's hardware fail: it loses the work since its last
        checkpoint and requeues, like a preemption, counted as a failure."""
        self._interrupt(job, now)
        job.failures += 1
        job.reason = "waiting: restarting after a hardware failure"

    # ---- nodes -----------------------------------------------------------------------------

    def set_node_up(self, node: int, up: bool, why: str = "operator") -> None:
        """A drained or down node takes no new work; its running jobs are left alone (evict
        them to stop them). A node is up when nothing keeps it out: the operator's mark and a
        maintenance window are separate reasons."""
        out = self.out_why.setdefault(node, set())
        (out.discard if up else out.add)(why)
        if not out:
            del self.out_why[node]
        self.cluster.set_up(node, not out)

    def set_maintenance(self, windows: Iterable[tuple[int, float, float]]) -> None:
        """Maintenance windows, (node, start_s, end_s) each, as Slurm's maintenance
        reservations: from start to end the node takes no new work (a job still on it runs
        on: evict it to stop it); before the start, a job starts there only if it would end
        first (by its time limit, else its estimate: a job that gives no limit is planned at
        the service's default). Replaces the windows set before."""
        for n in [n for n, why in self.out_why.items() if "maintenance" in why]:
            self.set_node_up(n, True, "maintenance")
        self.windows = sorted((float(s), float(e), n) for n, s, e in windows if e > s)
        self._maintenance(self._now)

    def _maintenance(self, now: float) -> None:
        """Open and close the windows due by now."""
        inside = {n for s, e, n in self.windows if s <= now < e}
        for n in inside:
            if "maintenance" not in self.out_why.get(n, ()):
                self.set_node_up(n, False, "maintenance")
        for n in [n for n, why in self.out_why.items() if "maintenance" in why]:
            if n not in inside:
                self.set_node_up(n, True, "maintenance")
        self.windows = [w for w in self.windows if w[1] > now]

    def jobs_on(self, node: int) -> list[Job]:
        return [j for j in self.running.values() if any(n == node for n, _ in j.placement)]

    def evict(self, nodes: Mapping[int, str], now: float, failure: bool = False
              ) -> list[Decision]:
        """Stop every job running on any of `nodes` (node -> why: an operator's drain --now,
        or the node is lost), in one pass over the running jobs however many nodes go (a
        site's drain): each keeps its work up to its last checkpoint and requeues; a loss
        counts as a failure, as a hardware failure in the twin does. Returns the decisions
        (preempt, or fail for a lost node)."""
        hit = []
        for job in self.running.values():
            on = [n for n, _ in job.placement if n in nodes]
            if on:
                hit.append((job, nodes[on[0]]))
        out = []
        for job, reason in hit:  # after the pass: stopping a job changes self.running
            pool, placement, attempt = job.pool, job.placement, job.epoch
            if failure:
                self.fail(job, now)
                job.reason = f"waiting: {reason}: requeued from its last checkpoint"
            else:
                self._preempt(job, now, f"waiting: preempted: {reason}")
                self.preempted_by["node out of service"] += 1
            out.append(Decision("fail" if failure else "preempt", job, job.reason, pool,
                                placement, attempt))
        return out

    def top(self, job: Job, now: float) -> list[Job]:
        """The operator's `top` (Slurm's `scontrol top`): a waiting `job` goes first in its
        tenant's order. It takes the place in line of the tenant's first waiting job, and the
        ones it passes move back one place each; other tenants' jobs keep theirs. The place
        in line is what submission time gives each policy (fifo, backfill, fairshare; under
        las and srtf it orders jobs of equal level or remaining work). Returns the jobs whose
        place changed."""
        if job.state is not JobState.WAITING:
            raise ValueError(f"job {job.id} is {job.state.value}: only a waiting job moves")
        line = list(job.tenant.waiting.values())
        passed = line[:line.index(job) + 1]
        if len(passed) == 1:
            return []
        places = sorted(j.order_s for j in passed)
        moved = [job, *passed[:-1]]
        for j in moved:
            self.policy.dequeue(j)
        for j, place in zip(moved, places):
            j.order_s = place
            self.policy.enqueue(j, now)
        rest = line[len(passed):]
        job.tenant.waiting.clear()
        job.tenant.waiting.update((j.id, j) for j in (*moved, *rest))
        return moved

    def requeue(self, job: Job, now: float, reason: str) -> Decision:
        """Stop a running job at the operator's word; it requeues with its checkpoint."""
        pool, placement, attempt = job.pool, job.placement, job.epoch
        self._preempt(job, now, reason)
        self.preempted_by["operator"] += 1
        return Decision("preempt", job, reason, pool, placement, attempt)

    def _preempt(self, job: Job, now: float, reason: str) -> None:
        """Stop a running job; it keeps the work up to its last checkpoint and requeues."""
        self._interrupt(job, now)
        job.preemptions += 1
        job.reason = reason

    def _interrupt(self, job: Job, now: float) -> None:
        useful_s = max(0.0, now - job.start_s - job.penalty_s) / job.pool.slowdown
        every = job.checkpoint_interval_s
        saved_s = min((useful_s // every) * every, job.remaining_s) if every else 0.0
        job.lost_gpu_s += (now - job.start_s - saved_s * job.pool.slowdown) * job.gpus
        job.progress_s += saved_s
        self._stop(job, now)
        self._enqueue(job, now)

    def _enqueue(self, job: Job, now: float) -> None:
        job.state = JobState.WAITING
        job.reason = "waiting: queued"
        job.estimate_s = job.time_limit_s if job.time_limit_s is not None else job.remaining_s
        job.tenant.waiting[job.id] = job
        self.waiting_gpus[job.gpus] += 1
        self.n_waiting += 1
        self.policy.enqueue(job, now)

    def _dequeue(self, job: Job) -> None:
        del job.tenant.waiting[job.id]
        self.waiting_gpus[job.gpus] -= 1
        if not self.waiting_gpus[job.gpus]:
            del self.waiting_gpus[job.gpus]
        self.n_waiting -= 1
        self.policy.dequeue(job)


def _duration(seconds: float) -> str:
    """A span as a person reads it: 45 s, 12 min, 3.5 h, 2.1 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
