"""Live inference services: replicas are jobs; gateways route; the loop scales and drains.

Two halves, talking only through the database, so each may live in its own process and there
may be any number of API processes (several `kraft serve` on one PostgreSQL):

- `Gateway` runs in each API process: it finds the running replicas, probes `/health` until
  each answers (readiness: every gateway probes for itself), and forwards OpenAI-style
  requests to one chosen by the shared router (kraft.infer.routing) among those on sites the
  caller's residency allows. It counts its own requests in flight per replica, the requests
  it holds waiting for a ready replica, and their SLO outcomes, and publishes them every
  refresh (a quarter second) to `gateway_load`; when it routes, a replica's load is its own
  count plus the other gateways' published ones.
- The scheduling loop (one per database) runs `autoscale_services` and `reconcile_services`:
  the shared autoscaler (kraft.infer.autoscale) on the sums of every fresh gateway's figures
  sets `desired_replicas`; scale-down marks a replica draining; once every gateway has seen
  it draining (so routes there no more) and has nothing in flight on it, the loop stops it,
  so no request fails. Replica jobs are kept at `desired_replicas` by submitting new ones: a
  plain gang of `tp` GPUs running the service's command with `PORT` set, scheduled by the
  same scheduler as training (not preemptible; within a reserved tenant's reservation it may
  preempt spot training, as any reserved job does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
from sqlalchemy import delete, func, select

from kraft.cluster.state import ClusterState
from kraft.control.store import (
    FINAL,
    GatewayLoadRow,
    JobRow,
    ServiceRow,
    TenantRow,
    sessions,
    utcnow,
    write_lock,
)
from kraft.exec.local import owns_port
from kraft.infer.autoscale import ScaleInput, desired_replicas
from kraft.infer.latency import ReplicaTiming, llm_model
from kraft.infer.routing import make_router
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.models import FleetSpec, JobSpec, ResidencySpec, TenantSpec

log = logging.getLogger("kraft.gateway")
GATEWAY_STALE_S = 5.0  # a gateway silent this long is gone (killed): its figures are dropped

def reconcile_services(s, now_s: float) -> int:
    """Submit replica jobs until every live service has `desired_replicas` that are not
    draining. Returns how many were submitted. The caller commits."""
    alive = (select(JobRow.service_id, func.count())
             .where(JobRow.service_id.is_not(None), JobRow.state.not_in(FINAL),
                    JobRow.draining.is_(False), JobRow.cancel_requested.is_(False))
             .group_by(JobRow.service_id))
    have = dict(s.execute(alive).all())
    made = 0
    for svc in s.scalars(select(ServiceRow).where(ServiceRow.deleted.is_(False))):
        spec = InferenceServiceSpec.model_validate(svc.spec)
        for _ in range(svc.desired_replicas - have.get(svc.id, 0)):
            row = JobRow(tenant=svc.tenant, name=f"{svc.name}-replica", spec={},
                         state="pending", reason="waiting: just submitted", attempt=0,
                         submitted_at=utcnow(), submitted_s=now_s, service_id=svc.id)
            # PORT is drawn when the replica starts (kraft.control.service), not from its id:
            # a predictable port is one another tenant's job can take first
            row.spec = JobSpec(
                name=row.name, tenant=svc.tenant, gpus=spec.tp, gpu_model=spec.gpu,
                command=spec.command, preemptible=False, env={"KRAFT_SERVICE": svc.name},
            ).model_dump(mode="json")
            s.add(row)
            made += 1
    return made


@dataclass
class Scaling:
    """The loop's memory of one service's autoscaling (lost with the leader: a new one
    starts the cooldown afresh, which only delays a scale-down)."""

    last_change_s: float
    next_scale_s: float = 0.0


def autoscale_services(s, now_s: float, scaling: dict[int, Scaling]) -> bool:
    """The autoscaler, on the sum of every fresh gateway's figures; then drained replicas
    stopped. With no gateway reporting on a service, its size holds (no figures is not no
    load), but a deleted one's replicas stop. True when it changed something; the caller
    commits."""
    s.execute(delete(GatewayLoadRow).where(GatewayLoadRow.at_s < now_s - 12 * GATEWAY_STALE_S))
    rows = s.scalars(select(GatewayLoadRow).where(
        GatewayLoadRow.at_s >= now_s - GATEWAY_STALE_S)).all()
    seen: dict[int, list[GatewayLoadRow]] = {}
    for row in rows:
        seen.setdefault(row.service_id, []).append(row)
    jobs = s.scalars(select(JobRow).where(JobRow.service_id.is_not(None),
                                          JobRow.state.not_in(FINAL))).all()
    changed = False
    for svc in s.scalars(select(ServiceRow).where(ServiceRow.id.in_(seen) | (
            ServiceRow.deleted.is_(True) & ServiceRow.id.in_({j.service_id for j in jobs})))):
        reports = seen.get(svc.id, [])  # none: a deleted service no gateway knows
        spec = InferenceServiceSpec.model_validate(svc.spec)
        mine = [j for j in jobs if j.service_id == svc.id]
        active = [j for j in mine if not j.draining and not j.cancel_requested]
        in_flight = {j.id: sum(r.in_flight.get(str(j.id), 0) for r in reports) for j in mine}
        memory = scaling.setdefault(svc.id, Scaling(last_change_s=now_s))
        want = svc.desired_replicas
        if svc.deleted:
            want = 0
        elif spec.autoscale.enabled and now_s >= memory.next_scale_s:
            memory.next_scale_s = now_s + spec.autoscale.interval_s
            finished = sum(r.finished for r in reports)
            x = ScaleInput(now_s, len(active),
                           sum(in_flight[j.id] for j in active) + sum(r.queued for r in reports),
                           sum(r.met for r in reports) / finished if finished else None,
                           spec.slo.percentile / 100, memory.last_change_s)
            want = desired_replicas(spec.autoscale, spec.replicas, x)
        if want != svc.desired_replicas or want < len(active):
            if want != svc.desired_replicas:
                memory.last_change_s = now_s
            svc.desired_replicas = want
            # drain the least busy replicas, those still starting first, then idle ones
            for job in sorted(active, key=lambda j: (j.state == "running", in_flight[j.id],
                                                     -j.id))[:max(0, len(active) - want)]:
                job.draining = True
            changed = True
        for job in mine:  # drained: every gateway saw it draining and has nothing on it
            if not job.draining or job.cancel_requested:
                continue
            if job.state != "running" or all(
                    job.id in r.draining_seen and not r.in_flight.get(str(job.id))
                    for r in reports):
                job.cancel_requested = True
                changed = True
    return changed


@dataclass
class LiveReplica:
    job_id: int
    site: str
    url: str
    mine: int = 0  # requests in flight through this gateway
    elsewhere: int = 0  # through the other gateways, as they last published
    ready: bool = False
    draining: bool = False
    stop_asked: bool = False
    runner_pid: int | None = None  # local replicas: whose process must hold the port
    port: int = 0

    timing: ReplicaTiming | None = None

    @property
    def outstanding(self) -> int:
        return self.mine + self.elsewhere

    def predicted_ttft_ms(self, prompt_tokens: int, now_s: float) -> float:
        """The live engine's queue is not visible: each request in flight ahead is taken to
        cost one prefill of this prompt's size, by the service's latency model."""
        one = self.timing.prefill_ms(prompt_tokens, prompt_tokens ** 2) if self.timing else 1
        return (self.outstanding + 1) * one


@dataclass
class LiveService:
    row_id: int
    tenant: str
    name: str
    spec: InferenceServiceSpec
    desired: int
    deleted: bool
    replicas: dict[int, LiveReplica] = field(default_factory=dict)
    starting: int = 0  # replica jobs not yet running
    outcomes: deque = field(default_factory=deque)  # (finished at, met the SLO)
    queued: int = 0  # requests waiting in the gateway for a ready replica (scale from zero)
    router: object = None
    timing: ReplicaTiming | None = None


class RoutingError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Gateway:
    def __init__(self, engine, fleet: FleetSpec, refresh_s: float = 0.25):
        self.engine, self.Session = engine, sessions(engine)
        cluster = ClusterState(fleet)
        self.site_of_node = {name: cluster.pools[cluster.node_pool[i]].site
                             for name, i in cluster.node_index().items()}
        self.sites = {site.name: site for site in fleet.sites}
        self.local = {site.name for site in fleet.sites if site.executor.kind == "local"}
        self.services: dict[int, LiveService] = {}  # by the service row's id
        self.residencies: dict[str, ResidencySpec] = {}
        self.regions: dict[str, str | None] = {}  # where each tenant's users are
        self.refresh_s = refresh_s
        self.name = f"{socket.gethostname()}:{os.getpid()}"  # its rows in gateway_load
        self.published = False
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=2))
        self._task: asyncio.Task | None = None
        self.changed = asyncio.Event()

    # ---- state from the database, health, scaling: one background task ------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self.client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._refresh)
                await self._probe()
                await asyncio.to_thread(self._publish, time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving; logged
                log.exception("gateway step failed")
            self.changed.set()
            self.changed = asyncio.Event()
            await asyncio.sleep(self.refresh_s)

    def _refresh(self) -> None:
        with self.Session() as s:
            jobs = s.scalars(select(JobRow).where(JobRow.service_id.is_not(None),
                                                  JobRow.state.not_in(FINAL))).all()
            # live services, and deleted ones only while their replicas drain
            rows = s.scalars(select(ServiceRow).where(
                ServiceRow.deleted.is_(False) | ServiceRow.id.in_(
                    {j.service_id for j in jobs}))).all()
            tenants = s.scalars(select(TenantRow)).all()
        # callers' residency, read here and not per request: the request path stays off the DB
        specs = [TenantSpec.model_validate(t.spec) for t in tenants]
        self.residencies = {t.name: t.residency for t in specs}
        self.regions = {t.name: t.region for t in specs}
        by_id = {}
        for row in rows:
            svc = self.services.get(row.id)
            if svc is None:
                spec = InferenceServiceSpec.model_validate(row.spec)
                svc = LiveService(row.id, row.tenant, row.name, spec, row.desired_replicas,
                                  row.deleted, router=make_router(spec.router, spec.slo.ttft_ms),
                                  timing=ReplicaTiming(llm_model(spec.model), spec.gpu, spec.tp,
                                                       spec.engine_overhead_ms))
                self.services[row.id] = svc
            svc.name, svc.desired, svc.deleted = row.name, row.desired_replicas, row.deleted
            svc.starting = 0
            by_id[row.id] = svc
        for sid in set(self.services) - set(by_id):  # deleted and drained: forget it
            del self.services[sid]
        seen: dict[int, set[int]] = {sid: set() for sid in by_id}
        for job in jobs:
            svc = by_id.get(job.service_id)
            if svc is None:
                continue
            if job.state != "running" or not job.placement:
                svc.starting += 1
                continue
            seen[svc.row_id].add(job.id)
            rep = svc.replicas.get(job.id)
            if rep is None:
                first = job.placement[0]
                if "port" not in first:
                    continue
                site = self.site_of_node[first["node"]]
                local = site.name in self.local
                host = "127.0.0.1" if local else first["node"]
                rep = svc.replicas[job.id] = LiveReplica(
                    job.id, site.name, f"http://{host}:{first['port']}", timing=svc.timing,
                    runner_pid=first.get("pid") if local else None, port=first["port"])
            rep.draining = rep.draining or job.draining or job.cancel_requested
        for sid, svc in by_id.items():
            for job_id in list(svc.replicas):
                if job_id not in seen[sid]:
                    del svc.replicas[job_id]  # ended: drained, cancelled or failed

    async def _probe(self) -> None:
        async def one(rep: LiveReplica) -> None:
            if rep.runner_pid is not None:  # local: the port must be held by the replica itself
                owner = await asyncio.to_thread(owns_port, rep.runner_pid, rep.port)
                if owner is False:
                    log.warning("replica %s: port %s is held by a process that is not the "
                                "replica's: never routed to; replaced", rep.job_id, rep.port)
                    if not rep.stop_asked:
                        await asyncio.to_thread(self._stop, rep, "its port was taken by "
                                                "another process: replaced on a new port")
                    return
                if owner is None:
                    return  # not listening yet
            try:
                rep.ready = (await self.client.get(f"{rep.url}/health", timeout=1)).is_success
            except httpx.HTTPError:
                rep.ready = False
        await asyncio.gather(*(one(r) for svc in self.services.values()
                               for r in svc.replicas.values() if not r.ready))

    def _publish(self, now_s: float) -> None:
        """Write this gateway's figures of each service it knows; read the others' in-flight
        counts into `elsewhere`. After `_refresh`: a replica it lists as draining is one it
        no longer routes to, so its in-flight count there can only fall."""
        mine = []
        for svc in self.services.values():
            while svc.outcomes and svc.outcomes[0][0] < now_s - svc.spec.autoscale.window_s:
                svc.outcomes.popleft()
            mine.append(dict(
                gateway=self.name, service_id=svc.row_id, queued=svc.queued, at_s=now_s,
                in_flight={str(r.job_id): r.mine for r in svc.replicas.values() if r.mine},
                draining_seen=[r.job_id for r in svc.replicas.values() if r.draining],
                met=sum(m for _, m in svc.outcomes), finished=len(svc.outcomes)))
        if not mine and not self.published:
            return  # no service known, none published before: no write at all
        self.published = bool(mine)
        with write_lock(self.engine), self.Session() as s:
            s.execute(delete(GatewayLoadRow).where(GatewayLoadRow.gateway == self.name))
            if mine:
                s.execute(GatewayLoadRow.__table__.insert(), mine)
            others = s.scalars(select(GatewayLoadRow).where(
                GatewayLoadRow.gateway != self.name,
                GatewayLoadRow.at_s >= now_s - GATEWAY_STALE_S)).all()
            s.commit()
        elsewhere: dict[int, dict[str, int]] = {}
        for row in others:
            for job_id, n in row.in_flight.items():
                by_rep = elsewhere.setdefault(row.service_id, {})
                by_rep[job_id] = by_rep.get(job_id, 0) + n
        for svc in self.services.values():
            counts = elsewhere.get(svc.row_id, {})
            for rep in svc.replicas.values():
                rep.elsewhere = counts.get(str(rep.job_id), 0)

    def _stop(self, rep: LiveReplica, why: str = "") -> None:
        with write_lock(self.engine), self.Session() as s:
            row = s.get(JobRow, rep.job_id)
            row.cancel_requested = True
            row.reason = why or row.reason
            s.commit()
        rep.stop_asked = True
        rep.ready = False

    # ---- requests ---------------------------------------------------------------------------

    def residency(self, tenant: str) -> ResidencySpec:
        """The caller's residency, as of the last refresh (a quarter second)."""
        if tenant not in self.residencies:  # a tenant newer than the last refresh
            with self.Session() as s:
                row = s.get(TenantRow, tenant)
            if row is not None:
                self.residencies[tenant] = TenantSpec.model_validate(row.spec).residency
        return self.residencies.get(tenant, ResidencySpec())

    def find(self, caller: str, name: str) -> LiveService:
        """The caller's own service of that name, else a shared one."""
        found = sorted((v.tenant != caller, v.row_id) for v in self.services.values()
                       if v.name == name and not v.deleted
                       and (v.tenant == caller or v.spec.shared))
        if not found:
            raise RoutingError(404, f"no service {name!r} (the request's 'model')")
        return self.services[found[0][1]]

    async def find_fresh(self, caller: str, name: str, wait_s: float = 30.0) -> LiveService:
        """`find`, and where this process does not know the service yet (created a moment
        ago, or through another API process), again after the next two refreshes: one may
        have begun before the service was on record."""
        try:
            return self.find(caller, name)
        except RoutingError as e:
            if e.status != 404:
                raise
        deadline = time.monotonic() + wait_s
        for _ in range(2):
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline -
                                                                 time.monotonic()))
            except TimeoutError:
                break
        return self.find(caller, name)

    def by_name(self, tenant: str, name: str) -> LiveService | None:
        return next((v for v in self.services.values()
                     if v.tenant == tenant and v.name == name), None)

    async def pick(self, svc: LiveService, caller: str, prompt_tokens: int,
                   wait_s: float = 30.0) -> LiveReplica:
        """A ready replica on a site the caller's residency allows (the router weighs the
        network from the caller's region); waits while replicas start."""
        deadline = time.monotonic() + wait_s
        residency, region = self.residency(caller), self.regions.get(caller)
        rtt = {name: site.latency_ms.get(region, 0.0) for name, site in self.sites.items()} \
            if region else {}
        svc.queued += 1  # demand the autoscaler sees while no replica can take it
        try:
            return await self._pick(svc, residency, rtt, prompt_tokens, deadline)
        finally:
            svc.queued -= 1

    async def _pick(self, svc, residency, rtt, prompt_tokens, deadline) -> LiveReplica:
        while True:
            live = [r for r in svc.replicas.values() if r.ready and not r.draining]
            sites = {r.site for r in svc.replicas.values()}
            allowed = [r for r in live if residency.allows(self.sites[r.site])]
            if allowed:
                return svc.router.choose(allowed, prompt_tokens, time.time(), rtt)
            if sites and not any(residency.allows(self.sites[x]) for x in sites):
                raise RoutingError(451, f"no replica of {svc.name!r} runs where your "
                                        f"residency allows ({residency.describe()}); replicas "
                                        f"are at: {', '.join(sorted(sites))}")
            if time.monotonic() > deadline:
                raise RoutingError(503, f"no ready replica of {svc.name!r} yet")
            await self.changed.wait()

    def record(self, svc: LiveService, ttft_ms: float, tpot_ms: float | None) -> None:
        met = ttft_ms <= svc.spec.slo.ttft_ms and (tpot_ms is None
                                                   or tpot_ms <= svc.spec.slo.tpot_ms)
        svc.outcomes.append((time.time(), met))
