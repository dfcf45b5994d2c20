"""From a canonical trace to the scheduler's jobs: tenant mapping, defaults, load scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from kraft.sched.job import Job, TenantState
from kraft.sim.traces.canonical import Trace
from kraft.spec.models import TenantsSpec


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
