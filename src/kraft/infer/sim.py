"""Request-level simulation of an InferenceService on a fleet: replicas with continuous
batching, a router, and optionally the autoscaler, driven by a request trace.

Replicas are placed on the sites the service's residency allows that have its GPU model,
spread in order of network latency to the users' region and limited by each site's GPUs.
Time to first token counts one network round trip between the users and the replica's site.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from kraft.catalog import CATALOG
from kraft.energy.models import capped_power_w, pue
from kraft.infer.autoscale import ScaleInput, desired_replicas
from kraft.infer.latency import ReplicaTiming, kv_capacity_tokens, llm_model
from kraft.infer.replica import Replica
from kraft.infer.requests import Requests
from kraft.infer.routing import make_router
from kraft.signals.series import SignalError, load_series
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.models import FleetSpec, SiteSpec

DEFAULT_OUTDOOR_C = 15.0  # as in the training books when a site has no weather series


class PlacementError(ValueError):
    """The service cannot be placed on the fleet; the message says why."""


@dataclass
class InferenceResult:
    figures: dict = field(default_factory=dict)
    ttft_s: np.ndarray | None = None
    tpot_s: np.ndarray | None = None
    met: np.ndarray | None = None
    replica_spans: list[tuple[float, float, str]] = field(default_factory=list)  # start, stop, site


def replica_slots(service: InferenceServiceSpec, fleet: FleetSpec) -> list[SiteSpec]:
    """One entry per replica the fleet can hold for this service, best site first and spread:
    the nearest allowed site's first replica, the next site's first, ..., then seconds."""
    sites = [s for s in fleet.sites if service.residency.allows(s)]
    if not sites:
        raise PlacementError(f"no site of fleet {fleet.name} satisfies the residency "
                             f"({service.residency.describe()})")
    per_site = []
    for s in sorted(sites, key=lambda s: s.latency_ms.get(service.region or "", 0.0)):
        gpus = sum(p.count * g.count * g.gpus for p in s.pods for g in p.nodes
                   if g.model == service.gpu and g.gpus >= service.tp)
        per_site.append([s] * (gpus // service.tp))
    slots = [s for group in _interleave(per_site) for s in group]
    if not slots:
        raise PlacementError(f"no allowed site has {service.tp} x {service.gpu} in one node")
    return slots


def _interleave(groups: list[list]) -> list[list]:
    longest = max((len(g) for g in groups), default=0)
    return [[g[i] for g in groups if i < len(g)] for i in range(longest)]


class _Replicas:
    """The service's replicas over time, on the fleet's replica slots."""

    def __init__(self, service: InferenceServiceSpec, fleet: FleetSpec, requests: Requests,
                 rtt: dict[str, float]):
        model = llm_model(service.model)
        self.service, self.requests, self.rtt = service, requests, rtt
        self.timing = ReplicaTiming(model, service.gpu, service.tp,
                                    service.engine_overhead_ms)
        self.kv_tokens = kv_capacity_tokens(model, service.gpu, service.tp)
        self.slots = replica_slots(service, fleet)
        self.free = [True] * len(self.slots)
        n = len(requests)
        self.first, self.finish = np.full(n, np.nan), np.full(n, np.nan)
        self.served_by = np.full(n, -1, dtype=np.int64)
        self.all: list[Replica] = []
        self.last_change_s, self.added, self.removed = 0.0, 0, 0

    def launch(self, now_s: float, ready_s: float) -> None:
        slot = self.free.index(True)
        self.free[slot] = False
        r = self.requests
        self.all.append(Replica(len(self.all), self.slots[slot].name, self.timing,
                                self.kv_tokens, self.service.max_batch, now_s, ready_s,
                                r.prompt_tokens, r.output_tokens, self.first, self.finish,
                                slot))

    def serving(self) -> list[Replica]:
        return [r for r in self.all if not r.draining and r.stopped_s is None]

    def tick(self, now_s: float) -> None:
        """One autoscaler look: advance everyone to now, retire drained replicas, decide,
        act."""
        spec = self.service.autoscale
        for r in self.all:
            if r.stopped_s is None:
                r.advance_to(now_s)
                if r.draining and r.outstanding == 0:
                    r.stopped_s = max(r.last_done_s, r.drain_s)
                    self.free[r.slot] = True
        active = self.serving()
        x = ScaleInput(now_s, len(active), sum(r.outstanding for r in active),
                       self._attainment(now_s - spec.window_s, now_s),
                       self.service.slo.percentile / 100, self.last_change_s)
        want = min(desired_replicas(spec, self.service.replicas, x),
                   len(active) + self.free.count(True))
        for _ in range(want - len(active)):
            self.launch(now_s, now_s + spec.startup_s)
        if want < len(active):
            victim = min(active, key=lambda r: (r.outstanding, -r.index))
            victim.draining, victim.drain_s = True, now_s
        if want != len(active):
            self.last_change_s = now_s
            self.added += max(0, want - len(active))
            self.removed += max(0, len(active) - want)

    def _attainment(self, since_s: float, now_s: float) -> float | None:
        """Share of the requests finished in (since, now] that met the SLO, network in."""
        recent = (self.finish > since_s) & (self.finish <= now_s)
        if not recent.any():
            return None
        net_s = np.array([self.rtt[self.all[j].site] for j in self.served_by[recent]]) / 1e3
        r = self.requests
        ttft_ms = (self.first[recent] - r.arrival_s[recent] + net_s) * 1e3
        tpot_ms = ((self.finish[recent] - self.first[recent]) * 1e3
                   / np.maximum(r.output_tokens[recent] - 1, 1))
        slo = self.service.slo
        return float(np.mean((ttft_ms <= slo.ttft_ms) & (tpot_ms <= slo.tpot_ms)))


def simulate(service: InferenceServiceSpec, fleet: FleetSpec, requests: Requests,
             router: str = "slo-aware", replicas: int | None = None,
             autoscale: bool | None = None) -> InferenceResult:
    wall0 = time.perf_counter()
    rtt = {s.name: s.latency_ms.get(service.region, 0.0) if service.region else 0.0
           for s in fleet.sites}
    pool = _Replicas(service, fleet, requests, rtt)
    scaling = service.autoscale.enabled if autoscale is None else autoscale
    bounds = service.replicas
    start = bounds.start if replicas is None else replicas
    if scaling:
        start = max(bounds.min, min(bounds.max, start))
    if start > len(pool.slots) or start < 1:
        raise PlacementError(f"{start} replicas of {service.tp} x {service.gpu}: the allowed "
                             f"sites hold 1 to {len(pool.slots)}")
    for _ in range(start):
        pool.launch(0.0, 0.0)
    pick = make_router(router, service.slo.ttft_ms)
    interval = service.autoscale.interval_s
    next_tick = interval if scaling else math.inf
    peak, refused = start, 0
    prompt = requests.prompt_tokens
    for i, t in enumerate(requests.arrival_s):
        while next_tick <= t:
            pool.tick(next_tick)
            peak = max(peak, sum(r.stopped_s is None for r in pool.all))
            next_tick += interval
        live = pool.serving()
        ready = [r for r in live if r.ready_s <= t] or live
        if not ready:
            refused += 1
            continue
        for r in ready:
            r.advance_to(t)
        chosen = pick.choose(ready, int(prompt[i]), t, rtt)
        chosen.add(i)
        pool.served_by[i] = chosen.index
    for r in pool.all:
        r.advance_to(math.inf)
        if r.stopped_s is None:
            r.stopped_s = max(r.clock_s, r.ready_s)
    return _result(service, fleet, requests, pool.all, pool.served_by, pool.first,
                   pool.finish, rtt, refused,
                   dict(replicas_added=pool.added, replicas_removed=pool.removed,
                        replicas_peak=peak, replicas_start=start, router=router,
                        autoscale=scaling, sim_wall_s=round(time.perf_counter() - wall0, 3)))


def _percentiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1), "p99": round(float(p99), 1)}


def _result(service, fleet, requests, replicas, served_by, first, finish, rtt, refused,
            extra) -> InferenceResult:
    sites = {s.name: s for s in fleet.sites}
    ok = served_by >= 0
    done = ok & ~np.isnan(finish)
    site_of = np.array([replicas[j].site for j in served_by[done]], dtype=object)
    net_s = np.array([rtt[s] for s in site_of], dtype=float) / 1e3
    ttft_s = first[done] - requests.arrival_s[done] + net_s
    out = requests.output_tokens[done]
    tpot_s = np.where(out > 1, (finish[done] - first[done]) / np.maximum(out - 1, 1), 0.0)
    met_done = (ttft_s * 1e3 <= service.slo.ttft_ms) & (tpot_s * 1e3 <= service.slo.tpot_ms)
    attainment = float(met_done.sum() / len(requests)) if len(requests) else 1.0
    gpu = CATALOG[service.gpu]
    gpu_hours = energy_kwh = carbon_g = 0.0
    carbon_known = True
    for r in replicas:
        site = sites[r.site]
        alive_s = r.stopped_s - r.started_s
        busy_w, idle_w = capped_power_w(gpu, site.gpu_power_cap_w), gpu.idle_power_w
        gpu_j = service.tp * (r.busy_s * busy_w + max(0.0, alive_s - r.busy_s) * idle_w)
        site_pue = float(pue(site.cooling, np.array([DEFAULT_OUTDOOR_C]))[0])
        kwh = gpu_j * (1 + site.host_overhead_share) * site_pue / 3.6e6
        gpu_hours += service.tp * alive_s / 3600
        energy_kwh += kwh
        intensity = _mean_carbon(site.grid_zone)
        carbon_known &= intensity is not None
        carbon_g += kwh * (intensity or 0.0)
    tokens = float(requests.output_tokens[done].sum() + requests.prompt_tokens[done].sum())
    per_1k = 1e3 / tokens if tokens else math.nan
    dropped = sum(len(r.dropped) for r in replicas)
    figures = {
        "service": service.name, "trace": requests.name, "requests": len(requests),
        "completed": int(done.sum()), "refused": refused, "too_long": dropped,
        "slo_attainment": round(attainment, 4),
        "slo_met": attainment >= service.slo.percentile / 100,
        "ttft_ms": _percentiles(ttft_s * 1e3), "tpot_ms": _percentiles(tpot_s * 1e3),
        "gpu_hours": round(float(gpu_hours), 3), "energy_kwh": round(float(energy_kwh), 3),
        "energy_wh_per_1k_tokens": round(float(energy_kwh * 1e3 * per_1k), 4),
        "carbon_g_per_1k_tokens_location": round(float(carbon_g * per_1k), 4)
        if carbon_known else None,
        "replicas_started_by_site": _by_site(replicas),
        **extra,
    }
    spans = [(r.started_s, r.stopped_s, r.site) for r in replicas]
    return InferenceResult(figures, ttft_s, tpot_s, met_done, spans)


def _by_site(replicas) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replicas:
        out[r.site] = out.get(r.site, 0) + 1
    return out


_CARBON: dict[str, float | None] = {}


def _mean_carbon(zone: str) -> float | None:
    """Location-based grid intensity, the bundled 2024 series' annual mean (g/kWh): request
    traces are an hour long and carry no date the grid series share."""
    if zone not in _CARBON:
        try:
            _CARBON[zone] = float(np.mean(load_series("carbon", zone).values))
        except SignalError:
            _CARBON[zone] = None
    return _CARBON[zone]
