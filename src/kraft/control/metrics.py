"""Prometheus metrics of the live service: `GET /metrics` (operator token).

Gauges are read from the database at scrape time, so they are right whichever process runs
the loop: GPUs and allocated GPUs per site, jobs by state, waiting jobs, IT and facility power
now (kraft.energy.power, as the budget and the books count it: busy GPUs at rated power, idle
ones at idle power, host overhead, and the PUE at this hour's outdoor temperature), the PUE,
and the grid's carbon intensity this hour (location-based: the site zone's bundled 2024 series
at this hour of the year). Per tenant, counters from the live books (kraft.control.usage):
GPU-seconds, IT and facility kWh, kgCO2e location- and market-based, energy cost.
The scheduling-cycle latency is a histogram observed by the loop; when the loop runs in its
own process (PostgreSQL) the two processes share it through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `kraft serve`).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from kraft.cluster.state import ClusterState
from kraft.control.store import JobRow
from kraft.energy.power import it_power_w, site_pue
from kraft.record import year_origin_s
from kraft.signals.series import SignalError, load_series
from kraft.spec.models import FleetSpec

CYCLE = Histogram("kraft_scheduling_cycle_seconds", "Wall time of one scheduling cycle",
                  buckets=(1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0))
# The whole step (engine poll, intake, the cycle, its writes): the loop's latency budget.
STEP = Histogram("kraft_loop_step_seconds", "Wall time of one step of the scheduling loop",
                 buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                          1.0, 2.0, 5.0))


class FleetCollector:
    def __init__(self, fleet: FleetSpec, sessionmaker):
        self.fleet, self.Session = fleet, sessionmaker
        cluster = ClusterState(fleet)
        self.pools = cluster.pools
        self.where = {name: (cluster.node_pool[i], cluster.node_pod[i])
                      for name, i in cluster.node_index().items()}
        self.pod_label = cluster.pod_name  # "site/pod" by pod index
        self.pod_gpus = Counter()
        for pool in cluster.pools:
            for node in pool.nodes:
                self.pod_gpus[(pool.site.name, cluster.node_pod[node])] += pool.gpus_per_node
        self.carbon, self.temperature = {}, {}
        for site in fleet.sites:
            try:
                self.carbon[site.name] = load_series("carbon", site.grid_zone).values
                if site.weather:
                    self.temperature[site.name] = load_series("temperature",
                                                              site.weather).values
            except SignalError:
                pass
        from kraft.control.usage import LiveBooks

        self.books = LiveBooks(fleet, cluster=cluster)

    def snapshot(self, now: float | None = None) -> dict:
        """The fleet now (epoch seconds; default the wall clock), from the database: shared by
        /metrics and the dashboard."""
        with self.Session() as s:
            states = dict(s.execute(select(JobRow.state, func.count())
                                    .group_by(JobRow.state)).all())
            running = s.scalars(select(JobRow.placement).where(JobRow.state == "running")).all()
        pool_busy, pod_busy = Counter(), Counter()
        for placement in running:
            for rank in placement or []:
                if rank["node"] in self.where:
                    pool, pod = self.where[rank["node"]]
                    pool_busy[pool] += len(rank["gpus"])
                    pod_busy[(self.pools[pool].site.name, pod)] += len(rank["gpus"])
        now = datetime.now(UTC).timestamp() if now is None else now
        hour = int((now - year_origin_s(now)) // 3600)
        sites = []
        for site in self.fleet.sites:
            pools = [p for p in self.pools if p.site is site]
            busy = sum(pool_busy[p.index] for p in pools)
            it_w = it_power_w(pools, pool_busy)
            series = self.carbon.get(site.name)
            temps = self.temperature.get(site.name)
            outdoor_c = None if temps is None else float(temps[hour % len(temps)])
            site_pue_now = float(site_pue(site, outdoor_c)[0])
            sites.append({
                "site": site.name, "zone": site.grid_zone,
                "gpus": sum(p.total_gpus for p in pools), "allocated": busy, "it_w": it_w,
                "facility_w": it_w * site_pue_now, "pue": site_pue_now,
                "outdoor_c": outdoor_c,
                "budget_w": site.it_power_budget_mw * 1e6,
                "carbon_g_per_kwh": None if series is None
                else float(series[hour % len(series)]),
                "pods": [{"pod": self.pod_label[p], "gpus": n, "allocated": pod_busy[(st, p)]}
                         for (st, p), n in sorted(self.pod_gpus.items()) if st == site.name]})
        return {"states": states, "sites": sites}

    def collect(self):
        snap = self.snapshot()
        states = snap["states"]
        jobs = GaugeMetricFamily("kraft_jobs", "Jobs by state", labels=["state"])
        for state in ("pending", "held", "admitted", "running", "preempted", "succeeded", "failed",
                      "cancelled", "rejected"):
            jobs.add_metric([state], states.get(state, 0))
        yield jobs
        yield GaugeMetricFamily("kraft_queue_waiting_jobs", "Jobs waiting to run",
                                value=states.get("pending", 0) + states.get("admitted", 0))
        total = GaugeMetricFamily("kraft_gpus", "GPUs", labels=["site"])
        used = GaugeMetricFamily("kraft_gpus_allocated", "GPUs allocated", labels=["site"])
        it_w = GaugeMetricFamily("kraft_it_power_watts", "IT power now (estimate)",
                                 labels=["site"])
        fac_w = GaugeMetricFamily("kraft_facility_power_watts", "Facility power now "
                                  "(IT x the PUE at this hour's temperature)", labels=["site"])
        pue_now = GaugeMetricFamily("kraft_site_pue", "PUE at this hour's outdoor temperature",
                                    labels=["site"])
        carbon = GaugeMetricFamily("kraft_grid_carbon_g_per_kwh", "Grid carbon intensity "
                                   "this hour, location-based", labels=["site", "zone"])
        for site in snap["sites"]:
            total.add_metric([site["site"]], site["gpus"])
            used.add_metric([site["site"]], site["allocated"])
            it_w.add_metric([site["site"]], site["it_w"])
            fac_w.add_metric([site["site"]], site["facility_w"])
            pue_now.add_metric([site["site"]], site["pue"])
            if site["carbon_g_per_kwh"] is not None:
                carbon.add_metric([site["site"], site["zone"]], site["carbon_g_per_kwh"])
        yield from (total, used, it_w, fac_w, pue_now, carbon)
        yield from self.tenant_counters()

    def tenant_counters(self):
        """Each tenant's totals since the first attempt on record, to now."""
        import time

        with self.Session() as s:
            try:
                totals = self.books.tenant_totals(s, time.time())
            except ValueError:  # a site without its series: no books, said at /v1/usage
                return
        if not totals:
            return
        for key, name, unit in (("gpu_hours", "gpu_seconds", 3600.0),
                                ("it_kwh", "it_kwh", 1.0),
                                ("facility_kwh", "facility_kwh", 1.0),
                                ("carbon_location_kg", "carbon_location_kg", 1.0),
                                ("carbon_market_kg", "carbon_market_kg", 1.0),
                                ("energy_cost_eur", "energy_cost_eur", 1.0)):
            c = CounterMetricFamily(f"kraft_tenant_{name}", f"{name} of the tenant's jobs "
                                    f"(live books)", labels=["tenant"])
            for tenant, row in sorted(totals.items()):
                c.add_metric([tenant], row[key] * unit)
            yield c


def render(collector: FleetCollector | None) -> bytes:
    """The exposition text: the cycle histogram (this process, or all processes in
    multiprocess mode) and the fleet gauges."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)
        text = generate_latest(shared)
    else:
        local = CollectorRegistry()
        local.register(_Only(CYCLE))
        local.register(_Only(STEP))
        text = generate_latest(local)
    if collector is not None:
        fleet = CollectorRegistry()
        fleet.register(collector)
        text += generate_latest(fleet)
    return text


class _Only:
    """Expose one metric of the default registry in a registry of our own."""

    def __init__(self, metric):
        self.metric = metric

    def collect(self):
        return self.metric.collect()
