"""Serving and training on one fleet under one scheduler, in the twin.

The replicas the request-level simulation ran (start, stop) become jobs of a reserved tenant
in a training replay on the same fleet: a tenant whose reservation is the service's peak
(`replicas.max x tp` GPUs), not preemptible, allowed where the service's residency allows. The
core scheduler then gives each replica its GPUs at once, preempting spot, then on-demand,
then borrowed training work if it must -- the live rule for a reserved tenant's replicas
(docs/inference.md). The coupling is one way: because the reservation covers the peak, a
replica never waits, so the serving figures stand as simulated; what changes is training's.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kraft.infer.sim import InferenceResult
from kraft.sim.run import simulate
from kraft.sim.traces.canonical import CANONICAL_SCHEMA, Trace
from kraft.sim.workload import offered_load
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.models import FleetSpec, TenantSpec, TenantsSpec, Tier


def _training(run, serving_tenant: str) -> dict:
    """Training jobs' figures, the replicas left out."""
    jobs = [j for j in run.outcome.jobs if j.tenant.name != serving_tenant]
    by_tier: dict[str, list] = {}
    for j in jobs:
        by_tier.setdefault(j.tenant.tier.value, []).append(j)

    def figures(js) -> dict:
        done = [j.finish_s - j.submit_s for j in js if j.finish_s >= 0]
        return {"jobs": len(js), "preemptions": sum(j.preemptions for j in js),
                "lost_gpu_hours": round(sum(j.lost_gpu_s for j in js) / 3600, 2),
                "jct_mean_h": round(float(np.mean(done)) / 3600, 3) if done else None}
    return {**figures(jobs), "per_tier": {t: figures(js) for t, js in sorted(by_tier.items())}}


def with_training(service: InferenceServiceSpec, fleet: FleetSpec, result: InferenceResult,
                  training: Trace, tenants: TenantsSpec, policy: str = "backfill",
                  load: float | None = None, at_s: float = 0.0) -> dict:
    """Training alone vs training beside the service, whose first request arrives `at_s`
    into the (load-scaled) training replay."""
    table = training.table
    if load is not None:
        factor = offered_load(training, fleet.gpu_count) / load
        submit = pa.compute.multiply(pa.compute.subtract(
            table["submit_s"], table["submit_s"][0]), factor)
        table = table.set_column(table.schema.get_field_index("submit_s"), "submit_s", submit)
    scaled = Trace(training.name, table, training.source, training.rows_read, training.dropped)
    name = f"inference-{service.name}"
    spans = [(a, b) for a, b, _ in result.replica_spans if b > a]
    rows = pa.table({
        "job_id": [f"{service.name}-replica-{i}" for i in range(len(spans))],
        "submit_s": [at_s + a for a, _ in spans],
        "duration_s": [b - a for a, b in spans],
        "gpus": [service.tp] * len(spans),
        "tenant": [name] * len(spans),
        "gpu_model": [service.gpu] * len(spans),
        "checkpoint_interval_s": [None] * len(spans),
        "restart_cost_s": [0.0] * len(spans),
        "preemptible": [False] * len(spans),
        "time_limit_s": [None] * len(spans),
        "flex_window_s": [0.0] * len(spans),
    }, schema=CANONICAL_SCHEMA)
    merged = pa.concat_tables([table, rows]).sort_by([("submit_s", "ascending")])
    both = Trace(f"{training.name}+{service.name}", merged, training.source)
    inference = TenantSpec(name=name, tier=Tier.RESERVED,
                           reserved_gpus=service.replicas.max * service.tp,
                           residency=service.residency)
    with_service = TenantsSpec(tenants=[*tenants.tenants, inference], default=tenants.default)
    alone = simulate(fleet, tenants, scaled, policy)
    beside = simulate(fleet, with_service, both, policy)
    replicas = [j for j in beside.outcome.jobs if j.tenant.name == name]
    waited = [j.first_start_s - j.submit_s for j in replicas if j.first_start_s >= 0]
    return {"training_alone": _training(alone, name),
            "training_beside_service": _training(beside, name),
            "replica_jobs": len(spans), "replicas_started": len(waited),
            "replica_wait_max_s": max(waited, default=0.0), "at_s": at_s, "policy": policy,
            # what serving held, beside what training had: why it may change nothing
            "service_gpu_hours": round(sum(service.tp * (b - a) for a, b in spans) / 3600, 3),
            "service_peak_gpus": service.replicas.max * service.tp,
            "service_hours": round((max((b for _, b in spans), default=0.0)
                                    - min((a for a, _ in spans), default=0.0)) / 3600, 3),
            "training_gpu_hours": round(sum(j.gpus * j.duration_s for j in alone.outcome.jobs)
                                        / 3600, 3),
            "fleet_gpus": fleet.gpu_count}
