"""Proof that the twin and the live service are one brain: a slice of the Philly trace (gangs, a
reserved lab, spot work, flexible jobs shifted by carbon, a site weigher) through the
simulator and through the live ControlPlane, on an injected clock with the executor that runs
nothing. The same jobs start at the same times on the same sites and nodes, end the same way,
and the books of both agree."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import insert, select

from kraft.cluster.state import ClusterState
from kraft.control.service import ControlPlane
from kraft.control.store import EventRow, JobRow, TenantRow, make_engine, migrate, sessions
from kraft.control.usage import LiveBooks
from kraft.energy.books import books, inputs_for
from kraft.exec.null import NullExecutor
from kraft.record import ENDINGS
from kraft.sched.build import SchedulingOptions, make_scheduler
from kraft.sched.job import Job, TenantState
from kraft.sim.engine import Simulator
from kraft.sim.traces import load_trace
from kraft.sim.workload import JobDefaults, build_jobs
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec, TenantsSpec

# Two sites whose pods share a name (node `pod-n000` exists at both): one identity per node.
FLEET = FleetSpec.model_validate({"name": "two-sites", "sites": [
    {"name": site, "country": country, "jurisdiction": "EEA", "grid_zone": zone,
     "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 40,
     "pods": [{"name": "pod", "nodes": [{"count": 2, "gpus": 8, "model": "H100-SXM"}]}]}
    for site, country, zone in (("oslo", "NO", "NO-NO1"), ("frankfurt", "DE", "DE"))]})
TENANTS = TenantsSpec.model_validate({
    "tenants": [{"name": "lab", "tier": "reserved", "reserved_gpus": 8, "weight": 4,
                 "match": ["6214e9"]},
                {"name": "acme", "tier": "on-demand", "weight": 2,
                 "match": ["b436b2", "11cb48", "6c71a0"]}],
    "default": {"name": "default", "tier": "spot", "weight": 1}})
OPTIONS = SchedulingOptions("backfill", shift_by="carbon", prefer="carbon",
                            forecast="recent-days")
N_JOBS = 300


def trace_jobs() -> list[Job]:
    trace = load_trace("philly-sample", None)
    cluster_gpus = ClusterState(FLEET).total_gpus
    built, _, _ = build_jobs(trace, TENANTS, JobDefaults(1800.0, 60.0, True, 1, 6 * 3600.0),
                             cluster_gpus, load=1.5)
    return built[:N_JOBS]


def fresh(jobs: list[Job]) -> tuple[list[Job], dict[str, TenantState]]:
    """The same jobs, ids 1.. as the database gives them, with tenants of their own."""
    states = {t.name: TenantState(t) for t in TENANTS.all}
    return [Job(i + 1, states[j.tenant.name], j.gpus, j.submit_s, j.duration_s, name=j.name,
                checkpoint_interval_s=j.checkpoint_interval_s, restart_cost_s=j.restart_cost_s,
                preemptible=j.preemptible, flex_window_s=j.flex_window_s)
            for i, j in enumerate(jobs)], states


def segments(record, cluster) -> list[tuple]:
    ids = record.job_ids or [k + 1 for k in range(record.n_jobs)]
    return sorted((ids[record.job[k]], int(record.attempt[k]),
                   cluster.pools[record.pool[k]].site.name, tuple(record.nodes[k]),
                   int(record.gpus[k]), round(float(record.start_s[k]), 6),
                   round(float(record.end_s[k]), 6), ENDINGS[record.ended[k]])
                  for k in range(len(record)))


class Clock:
    t = 0.0  # 1970-01-01: the live record's year starts at 0, as the twin's clock does

    def __call__(self) -> float:
        return self.t


def replay_live(db_url: str, jobs: list[Job], energy) -> tuple:
    engine = make_engine(db_url)
    migrate(engine)
    Session = sessions(engine)
    with Session() as s:
        for t in TENANTS.all:
            s.add(TenantRow(name=t.name, spec=t.model_dump(mode="json")))
        s.commit()
    clock = Clock()
    holder = {}
    # each attempt ends when its remaining work (plus restart cost) is done, as in the twin
    executor = NullExecutor(clock, end_at=lambda req: holder["plane"].jobs[req.job_id].end_s)
    plane = ControlPlane(FLEET, engine, executor, OPTIONS, energy=energy, clock=clock)
    holder["plane"] = plane
    plane.recover(0.0)
    i = 0
    while True:
        times = [executor.ends[(job_id, req.attempt)] for job_id, (req, _) in plane.runs.items()]
        if i < len(jobs):
            times.append(jobs[i].submit_s)
        wake = plane.sched.next_wakeup()
        if wake is not None and wake > clock.t:
            times.append(wake)
        if not times:
            break
        clock.t = min(times)
        rows = []
        while i < len(jobs) and jobs[i].submit_s <= clock.t:
            j = jobs[i]
            spec = JobSpec(name=j.name, tenant=j.tenant.name, gpus=j.gpus,
                           duration_s=j.duration_s,
                           checkpoint_interval_s=j.checkpoint_interval_s,
                           restart_cost_s=j.restart_cost_s, preemptible=j.preemptible,
                           flex_window_s=j.flex_window_s, command=["sleep", "0"])
            rows.append(dict(id=j.id, tenant=j.tenant.name, name=j.name, state="pending",
                             spec=spec.model_dump(mode="json"), submitted_s=j.submit_s))
            i += 1
        if rows:
            with Session() as s:
                s.execute(insert(JobRow.__table__), rows)
                s.commit()
        plane.step(clock.t)
    return engine, clock.t, plane


def test_the_twin_and_the_live_service_make_the_same_schedule(db_url):
    energy = inputs_for(FLEET)
    source = trace_jobs()
    assert max(j.gpus for j in source) >= 8, "the slice must hold gangs"
    assert {j.tenant.name for j in source} >= {"lab", "acme", "default"}
    assert sum(j.flex_window_s > 0 for j in source) >= 50, "and flexible jobs"

    sim_jobs, states = fresh(source)
    cluster = ClusterState(FLEET)
    sched = make_scheduler(cluster, states.values(), OPTIONS, energy)
    outcome = Simulator(sched, sim_jobs).run()
    sim_record = outcome.segments.record(outcome.jobs, cluster.node_name, outcome.end_s)

    live_jobs, _ = fresh(source)
    engine, end_s, plane = replay_live(db_url, live_jobs, energy)
    live = LiveBooks(FLEET, energy)
    with sessions(engine)() as s:
        live_record = live.record(s, 0.0, end_s)
        states_live = dict(s.execute(select(JobRow.id, JobRow.state)).all())
        details = s.scalars(select(EventRow.detail)).all()

    assert end_s == outcome.end_s
    want, got = segments(sim_record, cluster), segments(live_record, live.cluster)
    assert len(want) > N_JOBS * 0.8
    assert got == want
    preempted = sum(1 for seg in want if seg[-1] == "preempted")
    assert preempted > 0, "the reservation preempted someone: restarts are compared too"
    assert len({seg[2] for seg in want}) == 2, "both sites ran work"
    # rejected in both (gangs larger than a site's pool), done in both
    sim_state = {j.id: j.state.value for j in outcome.jobs}
    assert {k for k, v in sim_state.items() if v == "rejected"} == \
        {k for k, v in states_live.items() if v == "rejected"}
    assert {k for k, v in sim_state.items() if v == "done"} == \
        {k for k, v in states_live.items() if v == "succeeded"}
    # every choice carries its reason, as in the twin
    assert any("deferred to" in d and "recent-days-7 forecast" in d for d in details), \
        "a flexible job was deferred, and said why"
    assert any("ranked first of 2 allowed sites" in d for d in details)

    sim_books, sim_cols = books(sim_record, cluster, energy)
    live_books, live_cols = books(live_record, live.cluster, energy, (0.0, end_s))
    for key, value in sim_books["jobs"].items():
        assert live_books["jobs"][key] == pytest.approx(value, rel=1e-9), key
    for site, figures in sim_books["per_site"].items():
        for key in ("it_kwh", "facility_kwh", "carbon_location_kg", "carbon_market_kg"):
            assert live_books["per_site"][site][key] == pytest.approx(figures[key], rel=1e-9)
    assert np.sum(sim_cols["carbon_location_kg"]) > 0

    # The regulatory reports (kraft.reporting) of both records agree, field by field.
    from kraft.reporting import make
    from kraft.reporting.sitefile import SiteFile
    from kraft.reporting.sources import Source

    twin = Source(sim_record, cluster, energy, (0.0, outcome.end_s), 2024, "replay")
    real = Source(live_record, live.cluster, energy, (0.0, end_s), 2024, "replay")
    for name in ("lab", "acme", "default"):
        want = make.tenant(twin, name)["tenants"][name]
        got = make.tenant(real, name)["tenants"][name]
        assert len(want["rows"]) >= 1 and want["totals"]["energy_kwh"] > 0
        assert [(r["month"], r["site"]) for r in got["rows"]] == \
            [(r["month"], r["site"]) for r in want["rows"]]
        for w, g in zip(want["rows"], got["rows"]):
            for key in ("energy_kwh", "carbon_location_kg", "carbon_market_kg", "cfe_kwh"):
                assert g[key] == pytest.approx(w[key], rel=1e-9, abs=1e-9), (name, key)
    eed_twin, eed_live = make.eed(twin, SiteFile()), make.eed(real, SiteFile())
    for site, body in eed_twin["sites"].items():
        for key, f in body["fields"].items():
            got = eed_live["sites"][site]["fields"][key]["value"]
            if isinstance(f["value"], float):
                assert got == pytest.approx(f["value"], rel=1e-9), (site, key)
            else:
                assert got == f["value"], (site, key)
    run_twin, run_live = make.ai_act(twin, "lab", "*"), make.ai_act(real, "lab", "*")
    assert run_live["training_compute_flop"] == pytest.approx(
        run_twin["training_compute_flop"], rel=1e-12)
    assert run_live["energy_facility_kwh"] == pytest.approx(run_twin["energy_facility_kwh"])
    assert run_live["training_time_h"] == run_twin["training_time_h"] > 0
    engine.dispose()


def test_a_flexible_job_submitted_live_waits_for_a_cleaner_hour(db_url, tmp_path):
    """Through the API: a 2-hour job that must end within 14 hours, submitted at midnight in
    Germany in June, is deferred to the sunny hours the forecast (the same hour over the
    last 7 days, never the future) expects to be cleanest, says so, and starts then, within
    its deadline."""
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from kraft.control.api import add_tenant, create_app
    from kraft.signals.forecast import RecentDays
    from kraft.signals.series import load_series

    fleet = FleetSpec.model_validate({"name": "de", "sites": [{
        "name": "frankfurt", "country": "DE", "jurisdiction": "EEA", "grid_zone": "DE",
        "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 40,
        "pods": [{"name": "pod", "nodes": [{"count": 1, "gpus": 8, "model": "H100-SXM"}]}]}]})
    engine = make_engine(db_url)
    migrate(engine)
    with sessions(engine)() as s:
        token = add_tenant(s, TenantSpec(name="acme")).token
        s.commit()
    clock = Clock()
    clock.t = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    plane = ControlPlane(fleet, engine, NullExecutor(clock),
                         SchedulingOptions("backfill", shift_by="carbon",
                                           forecast="recent-days"), clock=clock)
    plane.recover(clock.t)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(engine, tmp_path, fleet=fleet)) as c:
        r = c.post("/v1/jobs", json={"gpus": 8, "command": ["sleep", "7200"],
                                     "time_limit_s": 7200, "deadline_s": 14 * 3600},
                   headers=auth)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        plane.step(clock.t)
        waiting = c.get(f"/v1/jobs/{job_id}", headers=auth).json()
        assert waiting["state"] == "admitted", waiting
        assert "deferred to 2026-06-01" in waiting["reason"] and "recent-days-7" in \
            waiting["reason"], waiting["reason"]
        # the hour it chose is the forecast's best start in its window (12 h: 14 less 2)
        values = load_series("carbon", "DE").values
        ahead = RecentDays().window(values, (151 * 24) * 3600.0, 16)
        means = [(ahead[h] + ahead[h + 1]) / 2 for h in range(13)]
        best_h = int(np.argmin(means))
        assert best_h > 0 and f"{best_h:02d}:00 UTC" in waiting["reason"]
        clock.t += best_h * 3600 - 1
        plane.step(clock.t)
        assert c.get(f"/v1/jobs/{job_id}", headers=auth).json()["state"] == "admitted"
        clock.t += 1
        plane.step(clock.t)
        started = c.get(f"/v1/jobs/{job_id}", headers=auth).json()
        assert started["state"] == "running"
        [attempt] = c.get(f"/v1/jobs/{job_id}/attempts", headers=auth).json()
        assert attempt["start"] == datetime(2026, 6, 1, best_h, tzinfo=UTC).isoformat()
    bad = JobSpec.model_validate
    with pytest.raises(ValueError, match="deadline_s needs time_limit_s"):
        bad({"gpus": 1, "deadline_s": 3600})
    engine.dispose()
