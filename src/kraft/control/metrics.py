"""Prometheus metrics of the live service: `GET /metrics` (operator token).

Gauges are read from the database at scrape time, so they are right whichever process runs
the loop: GPUs and allocated GPUs per site, jobs by state, waiting jobs, IT and facility power
now (a first-order estimate: busy GPUs at rated power, idle ones at idle power, host overhead
and PUE at 15 C, as in the books), and the grid's carbon intensity this hour (location-based:
the site zone's bundled 2024 series at this hour of the year). The scheduling-cycle latency is
a histogram observed by the loop; when the loop runs in its own process (PostgreSQL) the two
processes share it through prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by `kraft serve`).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from kraft.catalog import CATALOG
from kraft.cluster.state import ClusterState
from kraft.control.store import JobRow
from kraft.energy.models import capped_power_w, pue
from kraft.signals.series import SignalError, load_series
from kraft.spec.models import FleetSpec

CYCLE = Histogram("kraft_scheduling_cycle_seconds", "Wall time of one scheduling cycle",
                  buckets=(1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0))


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
        self.carbon = {}
        for site in fleet.sites:
            try:
                self.carbon[site.name] = load_series("carbon", site.grid_zone).values
            except SignalError:
                pass

    def snapshot(self) -> dict:
        """The fleet now, from the database: shared by /metrics and the dashboard."""
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
        now = datetime.now(UTC)
        hour = (now.timetuple().tm_yday - 1) * 24 + now.hour
        sites = []
        for site in self.fleet.sites:
            pools = [p for p in self.pools if p.site is site]
            # each GPU model at its own idle power, its busy GPUs at rated (or capped) power
            gpu_w = sum(p.total_gpus * CATALOG[p.model].idle_power_w + pool_busy[p.index]
                        * (capped_power_w(CATALOG[p.model], site.gpu_power_cap_w)
                           - CATALOG[p.model].idle_power_w) for p in pools)
            busy = sum(pool_busy[p.index] for p in pools)
            it_w = gpu_w * (1 + site.host_overhead_share)
            series = self.carbon.get(site.name)
            sites.append({
                "site": site.name, "zone": site.grid_zone,
                "gpus": sum(p.total_gpus for p in pools), "allocated": busy, "it_w": it_w,
                "facility_w": it_w * float(pue(site.cooling, np.array([15.0]))[0]),
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
        for state in ("pending", "admitted", "running", "preempted", "succeeded", "failed",
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
                                  "(IT x PUE at 15 C, estimate)", labels=["site"])
        carbon = GaugeMetricFamily("kraft_grid_carbon_g_per_kwh", "Grid carbon intensity "
                                   "this hour, location-based", labels=["site", "zone"])
        for site in snap["sites"]:
            total.add_metric([site["site"]], site["gpus"])
            used.add_metric([site["site"]], site["allocated"])
            it_w.add_metric([site["site"]], site["it_w"])
            fac_w.add_metric([site["site"]], site["facility_w"])
            if site["carbon_g_per_kwh"] is not None:
                carbon.add_metric([site["site"], site["zone"]], site["carbon_g_per_kwh"])
        yield from (total, used, it_w, fac_w, carbon)


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
