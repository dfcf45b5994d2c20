"""One simulation from specs to results: the function the CLI, benchmarks and tests call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kraft.cluster.state import ClusterState
from kraft.energy.books import EnergyInputs, books, per_job
from kraft.record import Record
from kraft.sched.build import SchedulingOptions, make_scheduler
from kraft.sched.scheduler import SchedulerConfig
from kraft.sim.engine import SimOutcome, Simulator
from kraft.sim.failures import FailureModel, failure_figures
from kraft.sim.metrics import decision_time, summarize
from kraft.sim.traces.canonical import Trace
from kraft.sim.workload import JobDefaults, build_jobs, offered_load, reach
from kraft.spec.models import FleetSpec, TenantsSpec


@dataclass
class SimRun:
    results: dict  # deterministic: results.json
    timing: dict  # this machine's decision times: timing.json
    outcome: SimOutcome
    job_energy: dict | None = None  # per-job energy columns, for jobs.parquet
    record: Record | None = None  # what ran, for the reports: record.parquet


def simulate(fleet: FleetSpec, tenants: TenantsSpec, trace: Trace, policy: str, *,
             load: float | None = None, seed: int = 0,
             defaults: JobDefaults = JobDefaults(),
             config: SchedulerConfig = SchedulerConfig(),
             policy_params: dict | None = None,
             energy: EnergyInputs | None = None,
             shift_by: str | None = None,
             prefer: str | None = None,
             forecast: str = "oracle",
             failures: FailureModel | None = None,
             maintenance: tuple[tuple[str, float, float], ...] = (),
             load_basis: str = "fleet",
             progress: Callable[[int], None] | None = None) -> SimRun:
    """`load_basis`: what `load` is relative to, the fleet's GPUs or only those on sites the
    trace's tenants may use (`reachable`; docs/traces.md)."""
    cluster = ClusterState(fleet)
    if load_basis not in ("fleet", "reachable"):
        raise ValueError(f"--load-basis {load_basis!r}? Use fleet or reachable")
    basis_gpus = (reach(trace, tenants, fleet)["reachable_gpus"] or cluster.total_gpus
                  if load_basis == "reachable" else cluster.total_gpus)
    jobs, tenant_states, factor = build_jobs(trace, tenants, defaults, basis_gpus, load)
    options = SchedulingOptions(policy, policy_params or {}, config, shift_by, prefer, forecast,
                                maintenance)
    scheduler = make_scheduler(cluster, tenant_states.values(), options, energy)
    outcome = Simulator(scheduler, jobs, progress, failures).run()
    results = summarize(outcome, fleet=fleet.name, fleet_gpus=cluster.total_gpus,
                        trace=trace.name, policy=policy, seed=seed, load_target=load,
                        load_offered=offered_load(trace, cluster.total_gpus) / factor,
                        time_factor=factor, dropped_rows=dict(trace.dropped))
    results["load"].update(basis=load_basis, **reach(trace, tenants, fleet, factor))
    results["preemptions_by_cause"] = dict(sorted(scheduler.preempted_by.items()))
    if failures is not None:
        results["failures"] = failure_figures(outcome.jobs, failures)
    if maintenance:
        from kraft.sim.maintenance import node_hours

        results["maintenance"] = {"windows": len(maintenance),
                                  "node_hours": round(node_hours(cluster, maintenance), 3)}
    job_energy = record = None
    if energy is not None:
        record = outcome.segments.record(outcome.jobs, cluster.node_name, outcome.end_s)
        results["energy"], cols = books(record, cluster, energy)
        job_energy = per_job(record, cols)
    return SimRun(results, decision_time(outcome), outcome, job_energy, record)
