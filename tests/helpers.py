"""Small fleets and job lists for tests, built in code so each test shows its whole setup."""

from __future__ import annotations

from kraft.cluster.state import ClusterState
from kraft.sched.job import Job, TenantState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler, SchedulerConfig
from kraft.sim.engine import Simulator
from kraft.spec.models import FleetSpec, TenantSpec


def fleet(nodes: int = 2, gpus: int = 4, pods: int = 1, sites: list[dict] | None = None,
          model: str = "H100-SXM", budget_mw: float = 1.0) -> FleetSpec:
    if sites is None:
        sites = [{"name": "s1", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO4"}]
    return FleetSpec.model_validate({
        "name": "test",
        "sites": [{"it_power_budget_mw": budget_mw, **s,
                   "pods": [{"name": f"p{p}", "nodes": [{"count": nodes, "gpus": gpus,
                                                          "model": model}]}
                            for p in range(pods)]} for s in sites],
    })


def tenant(name: str = "a", **kw) -> TenantState:
    return TenantState(TenantSpec(name=name, **kw))


def jobs(rows: list[tuple], tenants: dict[str, TenantState] | None = None, **kw) -> list[Job]:
    """rows: (submit_s, gpus, duration_s[, tenant name])."""
    tenants = tenants or {"a": tenant("a")}
    out = []
    for i, row in enumerate(rows):
        submit, gpus, duration, *rest = row
        t = tenants[rest[0] if rest else "a"]
        out.append(Job(i, t, gpus, float(submit), float(duration), **kw))
    return out


def run(fleet_spec: FleetSpec, job_list: list[Job], policy: str, tenants=None,
        config: SchedulerConfig | None = None, **policy_params) -> Scheduler:
    tenant_states = tenants if tenants is not None else {j.tenant.name: j.tenant for j in job_list}
    sched = Scheduler(ClusterState(fleet_spec), tenant_states.values(),
                      make_policy(policy, **policy_params), config)
    Simulator(sched, job_list).run()
    return sched


def jct(job_list: list[Job]) -> list[float]:
    return [j.finish_s - j.submit_s for j in job_list]
