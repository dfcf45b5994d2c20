"""From a canonical trace to the scheduler's jobs: tenant mapping, defaults, load scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kraft.sched.job import Job, TenantState
from kraft.sim.traces.canonical import Trace
from kraft.spec.models import FleetSpec, TenantsSpec


@dataclass(frozen=True)
class JobDefaults:
    """Used where a trace row leaves a field empty. Kraft's assumptions, not the traces'."""

    checkpoint_interval_s: float | None = 1800.0
    restart_cost_s: float = 60.0
    preemptible: bool = True
    # Flexibility rule for traces that record none: jobs of at most `flexible_max_gpus` GPUs
    # may start up to `flex_window_s` after submission (0 = nobody is flexible).
    flexible_max_gpus: int = 0
    flex_window_s: float = 0.0

    def window_for(self, gpus: int, given: float | None) -> float:
        if given is not None:
            return given
        return self.flex_window_s if gpus <= self.flexible_max_gpus else 0.0


def offered_load(trace: Trace, fleet_gpus: int) -> float:
    """GPU-seconds demanded / (fleet GPUs x arrival span): the fleet's busy share if every
    job ran at once on arrival."""
    t = trace.table
    if t.num_rows < 2:
        return 0.0
    demand = float(pc.sum(pc.multiply(t["gpus"].cast("double"), t["duration_s"])).as_py())
    span = float(pc.max(t["submit_s"]).as_py() - pc.min(t["submit_s"]).as_py())
    return demand / (fleet_gpus * span) if span > 0 else float("inf")


def reach(trace: Trace, tenants: TenantsSpec, fleet: FleetSpec, factor: float = 1.0) -> dict:
    """How the offered load reads on a fleet whose tenants may use only some sites: per
    tenant of the trace, the GPUs its residency lets it reach and its own offered load on
    them; the union of those GPUs and the load on it; and the arrival window (after `factor`)
    beside the longest job, since a window shorter than the jobs makes a burst, not a steady
    load, whatever the figure says."""
    t = trace.table
    by_name = pa.table({"tenant": t["tenant"], "gpu_s": pc.multiply(
        t["gpus"].cast("double"), t["duration_s"])}).group_by("tenant").aggregate(
        [("gpu_s", "sum")])
    demand: dict[str, float] = {}
    for name, gpu_s in zip(by_name["tenant"].to_pylist(), by_name["gpu_s_sum"].to_pylist()):
        owner = tenants.resolve(name).name  # once per trace tenant, not per job
        demand[owner] = demand.get(owner, 0.0) + gpu_s
    specs = {spec.name: spec for spec in tenants.all}
    span_s = (float(pc.max(t["submit_s"]).as_py() - pc.min(t["submit_s"]).as_py()) * factor
              if t.num_rows > 1 else 0.0)
    per_tenant, reachable = {}, set()
    for name, gpu_s in sorted(demand.items()):
        sites = [x for x in fleet.sites if specs[name].residency.allows(x)]
        reachable |= {x.name for x in sites}
        gpus = sum(x.gpu_count for x in sites)
        per_tenant[name] = {"reachable_gpus": gpus, "offered": round(
            gpu_s / (gpus * span_s), 3) if gpus and span_s else None}
    union = sum(x.gpu_count for x in fleet.sites if x.name in reachable)
    total = sum(demand.values())
    return {"reachable_gpus": union,
            "offered_reachable": round(total / (union * span_s), 3) if union and span_s
            else None,
            "per_tenant": per_tenant, "arrival_window_h": round(span_s / 3600, 3),
            "longest_job_h": round(float(pc.max(t["duration_s"]).as_py()) / 3600, 3)
            if t.num_rows else 0.0}


def build_jobs(trace: Trace, tenants: TenantsSpec, defaults: JobDefaults,
               fleet_gpus: int, load: float | None = None
               ) -> tuple[list[Job], dict[str, TenantState], float]:
    """Jobs in submission order, the tenant states they point to, and the time-compression
    factor applied (1.0 when `load` is None). `load` compresses (or stretches) arrival times
    so the offered load equals it; run times are kept."""
    t = trace.table
    factor = 1.0
    if load is not None:
        if load <= 0:
            raise ValueError(f"--load must be > 0, got {load}")
        current = offered_load(trace, fleet_gpus)
        factor = current / load if current > 0 else 1.0
    submit = t["submit_s"].to_numpy()
    submit = (submit - (submit[0] if len(submit) else 0.0)) * factor
    states = {spec.name: TenantState(spec) for spec in tenants.all}
    by_trace_name = {name: states[tenants.resolve(name).name]
                     for name in pc.unique(t["tenant"]).to_pylist()}

    def col(name: str) -> list:
        return t[name].to_pylist()

    ckpt, cost, pre, limit, flex = (col("checkpoint_interval_s"), col("restart_cost_s"),
                                    col("preemptible"), col("time_limit_s"),
                                    col("flex_window_s"))
    jobs = [
        Job(i, by_trace_name[tenant], gpus, float(sub), dur, name=jid, gpu_model=model,
            time_limit_s=limit[i],
            checkpoint_interval_s=defaults.checkpoint_interval_s if ckpt[i] is None else ckpt[i],
            restart_cost_s=defaults.restart_cost_s if cost[i] is None else cost[i],
            preemptible=defaults.preemptible if pre[i] is None else pre[i],
            flex_window_s=defaults.window_for(gpus, flex[i]))
        for i, (jid, sub, dur, gpus, tenant, model) in enumerate(zip(
            col("job_id"), np.asarray(submit).tolist(), col("duration_s"), col("gpus"),
            col("tenant"), col("gpu_model")))
    ]
    return jobs, states, factor
