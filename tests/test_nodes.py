"""Drained and down nodes: out of placement, their running jobs untouched until they end or
are evicted; the cluster's indexes stay exact under any mix of starts, ends, drains, resumes."""

from __future__ import annotations

import pytest
from helpers import fleet, jobs, tenant
from hypothesis import given, settings
from hypothesis import strategies as st

from kraft.cluster.state import ClusterState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler


def check(cluster: ClusterState) -> None:
    """Every index recomputed from the node counts and states."""
    for pool in cluster.pools:
        g = pool.gpus_per_node
        up = [n for n in pool.nodes if cluster.node_up[n]]
        for k in range(g + 1):
            assert set(pool.by_free[k]) == {n for n in up if cluster.node_free[n] == k}
        idle = {n for n in up if cluster.node_free[n] == g}
        assert pool.idle_nodes == len(idle)
        for pod, members in pool.pod_idle.items():
            assert set(members) == {n for n in idle if cluster.node_pod[n] == pod}
            assert pod in pool.pods_by_idle[len(members)]
        assert pool.free_gpus == sum(cluster.node_free[n] for n in up)
    assert cluster.free_gpus == sum(p.free_gpus for p in cluster.pools)
    assert cluster.allocated_gpus == sum(cluster.pools[cluster.node_pool[n]].gpus_per_node - f
                                         for n, f in enumerate(cluster.node_free))


ops = st.lists(st.tuples(st.sampled_from(["place", "release", "down", "up"]),
                         st.integers(0, 7), st.sampled_from([1, 2, 3, 4, 6, 8])), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_indexes_stay_exact_and_down_nodes_take_nothing(seq):
    cluster = ClusterState(fleet(nodes=4, gpus=4, pods=2))
    held = []
    for op, node, gpus in seq:
        if op == "place":
            placement = cluster.place(cluster.pools[0], gpus)
            if placement is not None:
                assert all(cluster.node_up[n] for n, _ in placement), "placed on a down node"
                cluster.allocate(placement)
                held.append(placement)
        elif op == "release" and held:
            cluster.release(held.pop(node % len(held)))
        elif op in ("down", "up"):
            cluster.set_up(node, op == "up")
        check(cluster)
    for placement in held:
        cluster.release(placement)
    for n in range(len(cluster.node_up)):
        cluster.set_up(n, True)
    check(cluster)
    assert cluster.free_gpus == cluster.total_gpus


def test_a_drained_node_finishes_its_work_and_takes_none():
    ts = {"a": tenant("a")}
    cluster = ClusterState(fleet(nodes=2, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy("fifo"))
    first, second, third = jobs([(0, 4, 100), (0, 4, 100), (0, 4, 100)], ts)
    for j in (first, second):
        sched.submit(j, 0)
    sched.cycle(0)
    node = first.placement[0][0]
    sched.set_node_up(node, False)  # drain: the job on it runs on
    assert first.state.value == "running" and sched.jobs_on(node) == [first]
    sched.finish(first, 100)
    sched.submit(third, 100)
    assert sched.cycle(100) == []  # its GPUs are free but the node is drained
    assert third.state.value == "waiting" and cluster.free_gpus == 0
    sched.set_node_up(node, True)
    [start] = sched.cycle(100)
    assert start.job is third and start.placement[0][0] == node


def test_evicting_a_node_requeues_its_jobs_from_their_checkpoint():
    ts = {"a": tenant("a")}
    cluster = ClusterState(fleet(nodes=2, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy("fifo"))
    [job] = jobs([(0, 8, 1000)], ts, checkpoint_interval_s=100)
    sched.submit(job, 0)
    sched.cycle(0)
    node = job.placement[1][0]
    sched.set_node_up(node, False)
    [gone] = sched.evict({node: "node down"}, 250, failure=True)
    assert gone.kind == "fail" and gone.job is job and gone.attempt == 1
    assert job.progress_s == 200 and job.failures == 1 and job.state.value == "waiting"
    assert sched.cycle(250) == []  # a gang of 8 no longer fits on the 4 GPUs left up



def test_evicting_a_pod_stops_each_job_once():
    """A drain --now of many nodes: a gang across two of them is preempted once, a job on a
    node left up runs on."""
    ts = {"a": tenant("a")}
    cluster = ClusterState(fleet(nodes=3, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy("fifo"))
    gang, alone = jobs([(0, 8, 1000), (0, 4, 1000)], ts)
    for j in (gang, alone):
        sched.submit(j, 0)
    sched.cycle(0)
    gang_nodes = {n for n, _ in gang.placement}
    assert len(gang_nodes) == 2 and alone.placement[0][0] not in gang_nodes
    out = sched.evict({n: f"node {n} drained" for n in gang_nodes}, 50)
    assert [(d.kind, d.job) for d in out] == [("preempt", gang)]
    assert alone.state.value == "running" and gang.state.value == "waiting"



@pytest.mark.parametrize("policy", ["fifo", "backfill"])
def test_backfill_honours_a_maintenance_window(policy):
    """Node 0 has maintenance from t=1,000 to 2,000 s. Before it, only a job that would end
    first starts there; during it, nothing; after it, the node takes work again."""
    from kraft.sched.job import Job

    ts = {"a": tenant("a")}
    cluster = ClusterState(fleet(nodes=2, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy(policy))
    sched.set_maintenance([(0, 1000.0, 2000.0)])
    long1 = Job(1, ts["a"], 4, 0.0, 3000.0, time_limit_s=3000.0)
    short = Job(2, ts["a"], 4, 0.0, 400.0, time_limit_s=500.0)
    long2 = Job(3, ts["a"], 4, 0.0, 3000.0, time_limit_s=3000.0)
    for j in (long1, short, long2):
        sched.submit(j, 0)
    starts = {d.job.id: d.placement[0][0] for d in sched.cycle(0) if d.kind == "start"}
    assert starts == {1: 1, 2: 0}  # the long one on node 1; node 0 only for the short one
    assert long2.state.value == "waiting"
    assert sched.next_wakeup() == 1000.0  # the window's opening is an event
    sched.finish(short, 400)
    assert sched.cycle(400) == []  # node 0 is free, but long2 would run into the window
    assert sched.cycle(1000) == [] and not cluster.node_up[0]
    assert sched.next_wakeup() == 2000.0
    [start] = sched.cycle(2000)
    assert start.job is long2 and start.placement[0][0] == 0 and cluster.node_up[0]
    assert sched.windows == [] and sched.next_wakeup() is None


def test_a_window_and_the_operators_mark_are_separate_reasons():
    ts = {"a": tenant("a")}
    cluster = ClusterState(fleet(nodes=1, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy("fifo"))
    sched.set_maintenance([(0, 10.0, 20.0)])
    sched.cycle(10)
    sched.set_node_up(0, False)  # the operator drains it during the window
    sched.cycle(20)  # the window closes: still drained
    assert not cluster.node_up[0]
    sched.set_node_up(0, True)
    assert cluster.node_up[0]

@pytest.mark.parametrize("policy", ["fifo", "backfill", "fairshare"])
def test_top_puts_a_job_first_in_its_tenants_order_only(policy):
    """a1 a2 b1 a3 queued behind a full fleet; top a3: the tenant's line is a3 a1 a2, and b1
    keeps its place (a3 takes a1's, a1 a2's, a2 a3's)."""
    ts = {"a": tenant("a"), "b": tenant("b")}
    cluster = ClusterState(fleet(nodes=1, gpus=4))
    sched = Scheduler(cluster, ts.values(), make_policy(policy))
    blocker, a1, a2, b1, a3 = jobs([(0, 4, 100), (1, 4, 10), (2, 4, 10), (3, 4, 10, "b"),
                                    (4, 4, 10)], ts)
    for j in (blocker, a1, a2, b1, a3):
        sched.submit(j, j.submit_s)
    sched.cycle(5)
    moved = sched.top(a3, 5)
    assert {j.id for j in moved} == {a1.id, a2.id, a3.id}
    assert list(ts["a"].waiting) == [a3.id, a1.id, a2.id]
    assert (a3.order_s, a1.order_s, a2.order_s, b1.order_s) == (1, 2, 4, 3)
    assert sched.top(a3, 5) == []  # already first
    order = [j.id for j in sched.policy.order(5)]
    assert order.index(a3.id) < order.index(a1.id) < order.index(a2.id)
    if policy != "fairshare":  # fairshare orders tenants by usage, not by time
        assert order == [a3.id, a1.id, b1.id, a2.id]
    with pytest.raises(ValueError, match="only a waiting job"):
        sched.top(blocker, 5)

# ---- live: the operator drains, downs and resumes nodes through the API -------------------

import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from kraft.control.api import create_app  # noqa: E402
from kraft.control.auth import ensure_operator_token  # noqa: E402
from kraft.control.service import ControlPlane  # noqa: E402
from kraft.control.store import make_engine, migrate  # noqa: E402
from kraft.exec.null import NullExecutor  # noqa: E402
from kraft.spec.load import load_fleet  # noqa: E402

N0, N1 = "local/pod-n000", "local/pod-n001"


@pytest.fixture
def live(db_url, tmp_path):
    engine = make_engine(db_url)
    migrate(engine)
    home = tmp_path / "home"
    op = {"Authorization": f"Bearer {ensure_operator_token(home)}"}
    plane = ControlPlane(load_fleet("local"), engine, NullExecutor())
    with TestClient(create_app(engine, home, plane, tick_s=0.02)) as c:
        c.engine = plane.executor
        r = c.post("/admin/tenants", json={"name": "acme"}, headers=op)
        c.tenant = {"Authorization": f"Bearer {r.json()['token']}"}
        c.op = op
        yield c
    engine.dispose()


def until(c, job_id, test, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/v1/jobs/{job_id}", headers=c.tenant).json()
        if test(job):
            return job
        time.sleep(0.03)
    raise AssertionError(job)


def node_states(c) -> dict:
    return {n["node"]: n for n in c.get("/admin/nodes", headers=c.op).json()["nodes"]}


def test_drain_down_and_resume_through_the_api(live):
    c = live
    submit = lambda gpus, secs=600: c.post(  # noqa: E731
        "/v1/jobs", json={"gpus": gpus, "command": ["sleep", str(secs)]},
        headers=c.tenant).json()["id"]
    first = submit(4)
    job = until(c, first, lambda j: j["state"] == "running")
    on = job["placement"][0]["node"]
    other = N1 if on == N0 else N0
    # drain: the job on it runs on, new work goes elsewhere, then waits
    r = c.post("/admin/nodes/drain", json={"target": on, "reason": "firmware update"},
               headers=c.op)
    assert r.status_code == 200 and r.json()["nodes"] == [on]
    second = submit(4)
    assert until(c, second, lambda j: j["state"] == "running")["placement"][0]["node"] == other
    third = submit(4)
    time.sleep(0.3)
    assert c.get(f"/v1/jobs/{third}", headers=c.tenant).json()["state"] == "admitted"
    assert c.get(f"/v1/jobs/{first}", headers=c.tenant).json()["state"] == "running"
    states = node_states(c)
    assert states[on]["state"] == "draining" and states[on]["jobs"] == [first]
    assert states[on]["reason"] == "firmware update" and states[other]["state"] == "up"
    # drain --now: the job on it is preempted (its checkpoint kept) and waits with the third
    c.post("/admin/nodes/drain", json={"target": on, "reason": "firmware update", "now": True},
           headers=c.op)
    until(c, first, lambda j: j["state"] == "admitted")
    events = [e["detail"] for e in c.get(f"/v1/jobs/{first}/events", headers=c.tenant).json()]
    assert any(f"node {on} drained by the operator (firmware update)" in d for d in events)
    assert node_states(c)[on]["state"] == "drained"
    [attempt] = c.get(f"/v1/jobs/{first}/attempts", headers=c.tenant).json()
    assert attempt["ended"] == "preempted"
    # down: the other node's job requeues, counted as a failure in the record
    c.post("/admin/nodes/down", json={"target": other, "reason": "PSU failed"}, headers=c.op)
    until(c, second, lambda j: j["state"] == "admitted")
    [lost] = c.get(f"/v1/jobs/{second}/attempts", headers=c.tenant).json()
    assert lost["ended"] == "failed" and node_states(c)[other]["state"] == "down"
    # resume the site: the waiting jobs start again, the first two on a new attempt
    c.post("/admin/nodes/resume", json={"target": "local"}, headers=c.op)
    assert until(c, first, lambda j: j["state"] == "running")["attempt"] == 2
    assert until(c, second, lambda j: j["state"] == "running")["attempt"] == 2
    assert {n["state"] for n in node_states(c).values()} == {"up"}
    audit = [a for a in c.get("/admin/audit", headers=c.op).json()
             if a["action"].startswith("node.")]
    assert [a["action"] for a in audit] == ["node.resume", "node.down", "node.drain",
                                            "node.drain"]
    assert audit[1]["detail"].startswith("PSU failed") and "--now" in audit[2]["detail"]



def test_a_node_the_engine_loses_is_marked_down_and_its_jobs_requeue(live, monkeypatch):
    """The engine reports a node lost: the loop marks it down with the engine's reason, the
    gang on it requeues from its checkpoint as a failure; the engine has it back: resumed,
    and the gang runs again on a new attempt. An operator's mark is left as it is."""
    import kraft.control.service as service

    monkeypatch.setattr(service, "HEALTH_EVERY_S", 0.05)
    c = live
    gang = c.post("/v1/jobs", json={"gpus": 8, "command": ["sleep", "600"],
                                    "checkpoint_interval_s": 60}, headers=c.tenant).json()["id"]
    until(c, gang, lambda j: j["state"] == "running")
    c.post("/admin/nodes/drain", json={"target": N0, "reason": "operator's own"},
           headers=c.op)
    c.engine.down = {N1: "slurm reports it down: Not responding", N0: "also down"}
    until(c, gang, lambda j: j["state"] == "admitted")
    states = node_states(c)
    assert states[N1]["state"] == "down"
    assert states[N1]["reason"] == "slurm reports it down: Not responding"
    assert states[N0]["reason"] == "operator's own"  # the operator's mark stands
    [lost] = c.get(f"/v1/jobs/{gang}/attempts", headers=c.tenant).json()
    assert lost["ended"] == "failed"
    events = [e["detail"] for e in c.get(f"/v1/jobs/{gang}/events", headers=c.tenant).json()]
    assert any("node local/pod-n001 down (slurm reports it down: Not responding)" in d
               for d in events), events
    c.engine.down = {}
    deadline = time.time() + 10
    while node_states(c)[N1]["state"] != "up":
        assert time.time() < deadline
        time.sleep(0.05)
    assert node_states(c)[N0]["state"] == "drained"  # not the engine's to resume
    c.post("/admin/nodes/resume", json={"target": N0}, headers=c.op)
    assert until(c, gang, lambda j: j["state"] == "running")["attempt"] == 2
    audit = [(a["actor"], a["action"]) for a in c.get("/admin/audit", headers=c.op).json()
             if a["action"].startswith("node.")]
    assert ("engine:null", "node.down") in audit and ("engine:null", "node.resume") in audit


def test_a_maintenance_window_through_the_api(live):
    """A window on N0 an hour from now: a job with no time limit (planned at a week) does not
    start there, one that ends first does. A window open now: the node is `maint`, and back
    up, its row gone, once it closes."""
    from datetime import UTC, datetime

    c = live
    iso = lambda dt: datetime.fromtimestamp(time.time() + dt, UTC).isoformat()  # noqa: E731
    r = c.post("/admin/nodes/drain", json={"target": N0, "reason": "PSU swap",
                                           "from": iso(3600), "until": iso(7200)},
               headers=c.op)
    assert r.status_code == 200, r.text
    submit = lambda **kw: c.post("/v1/jobs", json={  # noqa: E731
        "gpus": 4, "command": ["sleep", "600"], **kw}, headers=c.tenant).json()["id"]
    endless = submit()
    assert until(c, endless, lambda j: j["state"] == "running")["placement"][0]["node"] == N1
    short = submit(time_limit_s=600)
    assert until(c, short, lambda j: j["state"] == "running")["placement"][0]["node"] == N0
    n0 = node_states(c)[N0]
    assert n0["state"] == "up" and n0["reason"] == "PSU swap" and n0["maintenance"]["start"]
    # a window open now, two seconds long
    c.post(f"/v1/jobs/{endless}/cancel", headers=c.tenant)
    until(c, endless, lambda j: j["state"] == "cancelled")
    c.post("/admin/nodes/drain", json={"target": N1, "reason": "firmware", "from": iso(-10),
                                       "until": iso(2)}, headers=c.op)
    deadline = time.time() + 1.5
    while node_states(c)[N1]["state"] != "maint":
        assert time.time() < deadline
        time.sleep(0.05)
    blocked = submit(time_limit_s=60)
    time.sleep(0.3)
    assert c.get(f"/v1/jobs/{blocked}", headers=c.tenant).json()["state"] == "admitted"
    assert until(c, blocked, lambda j: j["state"] == "running",
                 timeout=10)["placement"][0]["node"] == N1
    assert node_states(c)[N1]["state"] == "up" and node_states(c)[N1]["maintenance"] is None
    audit = [(a["actor"], a["action"], a["target"]) for a in
             c.get("/admin/audit", headers=c.op).json()]
    assert ("maintenance", "node.resume", N1) in audit
    bad = c.post("/admin/nodes/drain", json={"target": N0, "reason": "x", "from": iso(10),
                                             "until": iso(5)}, headers=c.op)
    assert bad.status_code == 422 and "after its start" in bad.json()["detail"]
    half = c.post("/admin/nodes/drain", json={"target": N0, "reason": "x", "from": iso(10)},
                  headers=c.op)
    assert half.status_code == 422 and "both" in half.json()["detail"]

def test_node_requests_that_cannot_be_met_say_why(live):
    c = live
    r = c.post("/admin/nodes/drain", json={"target": "nowhere/pod-n000", "reason": "x"},
               headers=c.op)
    assert r.status_code == 404 and "no node, pod or site 'nowhere/pod-n000'" in r.text
    r = c.post("/admin/nodes/down", json={"target": N0}, headers=c.op)
    assert r.status_code == 422 and "needs a reason" in r.text
    r = c.post("/admin/nodes/drain", json={"target": N0, "reason": "x"}, headers=c.tenant)
    assert r.status_code == 401  # the operator's API only
    assert c.post("/admin/nodes/reboot", json={"target": N0}, headers=c.op).status_code == 422


def test_the_operator_commands_on_the_host(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from kraft.cli import app
    from kraft.control.nodes import remember_fleet
    from kraft.control.store import sessions

    home = tmp_path / "home"
    runner = CliRunner()
    args = ["--data-dir", str(home)]
    said = runner.invoke(app, ["nodes", *args])
    assert said.exit_code == 2 and "no fleet on record" in said.output
    engine = make_engine(f"sqlite:///{home / 'kraft.db'}")
    migrate(engine)
    with sessions(engine)() as s:  # as kraft serve --fleet nordic-federation keeps it
        remember_fleet(s, load_fleet("nordic-federation"))
        s.commit()
    r = runner.invoke(app, ["admin", "node", "drain", "narvik/pod-0001", "--reason",
                            "cooling loop service", *args])
    assert r.exit_code == 0 and "16 node(s) drained" in r.output, r.output
    r = runner.invoke(app, ["admin", "node", "down", "virginia/pod-0000-n003", "--reason",
                            "lost", *args])
    assert r.exit_code == 0, r.output
    data = _json.loads(runner.invoke(app, ["nodes", "-o", "json", *args]).output)
    states = {n["node"]: n["state"] for n in data["nodes"]}
    assert states["narvik/pod-0001-n000"] == "drained" and states["narvik/pod-0000-n000"] == "up"
    assert states["virginia/pod-0000-n003"] == "down"
    assert data["sites"]["narvik"]["up"] == 48 and data["sites"]["virginia"]["up"] == 63
    assert len(states) == 5 * 64  # five sites whose pods share names: every node its own
    from kraft.control.api import add_tenant
    from kraft.control.store import JobRow
    from kraft.spec.models import TenantSpec

    with sessions(engine)() as s:
        add_tenant(s, TenantSpec(name="acme"))
        s.add(JobRow(tenant="acme", name="big", state="admitted", spec={"gpus": 8}))
        s.commit()
    r = runner.invoke(app, ["admin", "job", "hold", "1", "--reason", "quota", *args])
    assert r.exit_code == 0 and "job 1: hold requested" in r.output, r.output
    r = runner.invoke(app, ["admin", "job", "release", "1", "--reason", "x", *args])
    assert r.exit_code == 2 and "job 1 is admitted, not held" in r.output
    r = runner.invoke(app, ["admin", "job", "hold", "7", "--reason", "x", *args])
    assert r.exit_code == 2 and "no job 7" in r.output
    listed = runner.invoke(app, ["admin", "jobs", "-o", "json", *args])
    assert [j["name"] for j in _json.loads(listed.output)] == ["big"]
    # a tenant's life, from the host
    r = runner.invoke(app, ["admin", "tenant", "update", "acme", "--quota-gpus", "4",
                            "--jurisdictions", "EEA", *args])
    assert r.exit_code == 0 and "quota 4" in r.output and "jurisdiction=EEA" in r.output
    r = runner.invoke(app, ["admin", "tenant", "update", "acme", "--tier", "gold", *args])
    assert r.exit_code == 2 and "tier" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["admin", "tenant", "token", "acme", "--name", "ci",
                            "--expires-days", "30", *args])
    assert r.exit_code == 0 and "kt_" in r.output and "expires" in r.output, r.output
    r = runner.invoke(app, ["admin", "tenant", "create", "acme", *args])
    assert r.exit_code == 2 and "kraft admin tenant token gives it a new token" in r.output
    r = runner.invoke(app, ["admin", "tenant", "delete", "acme", *args])
    assert r.exit_code == 2 and "has 1 live job(s)" in " ".join(r.output.split())
    r = runner.invoke(app, ["admin", "tenant", "delete", "acme", "--cancel-all", *args])
    assert r.exit_code == 0 and "1 live job(s) cancelled" in r.output
    engine.dispose()


# ---- the operator's control of any tenant's jobs ------------------------------------------

def test_the_operator_holds_releases_requeues_and_cancels_a_tenants_jobs(live):
    c = live
    submit = lambda gpus: c.post(  # noqa: E731
        "/v1/jobs", json={"gpus": gpus, "command": ["sleep", "600"]},
        headers=c.tenant).json()["id"]
    big, waiting = submit(8), submit(8)
    until(c, big, lambda j: j["state"] == "running")
    act = lambda job_id, action, reason="quota review": c.post(  # noqa: E731
        f"/admin/jobs/{job_id}/{action}", json={"reason": reason}, headers=c.op)
    assert act(big, "hold").status_code == 409  # running: requeue or cancel it
    assert act(waiting, "hold").status_code == 202
    until(c, waiting, lambda j: j["state"] == "held")
    assert act(waiting, "release", "review done").status_code == 202
    until(c, waiting, lambda j: j["state"] == "admitted")
    # requeue: the running one stops and queues again with its checkpoint; first submitted,
    # it is first in the backfill order and starts again, on attempt 2
    assert act(big, "requeue", "node firmware").status_code == 202
    assert until(c, big, lambda j: j["state"] == "running" and j["attempt"] == 2)
    events = [e["detail"] for e in c.get(f"/v1/jobs/{big}/events", headers=c.tenant).json()]
    assert any("requeue by the operator: node firmware" in d for d in events), events
    assert act(big, "cancel", "runaway job").status_code == 202
    done = until(c, big, lambda j: j["state"] == "cancelled")
    assert done["reason"] == "cancelled by the operator: runaway job"
    everyone = c.get("/admin/jobs", headers=c.op).json()
    assert {j["id"] for j in everyone} == {big, waiting}
    assert [j["id"] for j in c.get("/admin/jobs", params={"state": "cancelled"},
                                   headers=c.op).json()] == [big]
    assert act(big, "requeue").status_code == 409  # it ended
    assert act(99999, "hold").status_code == 404
    assert c.post(f"/admin/jobs/{waiting}/hold", json={"reason": ""},
                  headers=c.op).status_code == 422
    assert c.post(f"/admin/jobs/{waiting}/cancel", json={"reason": "x"},
                  headers=c.tenant).status_code == 401  # a tenant is not the operator
    audit = [a for a in c.get("/admin/audit", headers=c.op).json()
             if a["action"].startswith("job.") and a["action"] != "job.submit"]
    assert [a["action"] for a in audit] == ["job.cancel", "job.requeue", "job.release",
                                            "job.hold"]
    assert audit[0]["detail"] == "runaway job (tenant acme)"
    until(c, waiting, lambda j: j["state"] == "running")  # the GPUs the cancel freed
    on_site = lambda site: [j["id"] for j in c.get(  # noqa: E731
        "/admin/jobs", params={"site": site}, headers=c.op).json()]
    assert on_site("local") == [waiting] and on_site("elsewhere") == []



def test_the_operator_tops_a_waiting_job(live):
    c = live
    submit = lambda: c.post(  # noqa: E731
        "/v1/jobs", json={"gpus": 8, "command": ["sleep", "600"]},
        headers=c.tenant).json()["id"]
    big, w1, _, w3 = submit(), submit(), submit(), submit()
    until(c, big, lambda j: j["state"] == "running")
    until(c, w3, lambda j: j["state"] == "admitted")
    top = c.post(f"/admin/jobs/{w3}/top", json={"reason": "deadline tonight"}, headers=c.op)
    assert top.status_code == 202, top.text
    assert c.post(f"/admin/jobs/{big}/top", json={"reason": "x"},
                  headers=c.op).status_code == 409  # running: nothing to pass
    deadline = time.time() + 10
    while not any("first in its tenant's order: top by the operator: deadline tonight"
                  in e["detail"] for e in c.get(f"/v1/jobs/{w3}/events",
                                                headers=c.tenant).json()):
        assert time.time() < deadline
        time.sleep(0.05)
    c.post(f"/v1/jobs/{big}/cancel", headers=c.tenant)
    until(c, w3, lambda j: j["state"] == "running")  # it went first, past w1 and w2
    assert c.get(f"/v1/jobs/{w1}", headers=c.tenant).json()["state"] == "admitted"
    assert [a["action"] for a in c.get("/admin/audit", headers=c.op).json()
            if a["target"] == str(w3)][0] == "job.top"


def test_a_tenant_sees_its_queue_in_the_schedulers_order(live):
    c = live
    submit = lambda gpus, **kw: c.post("/v1/jobs", json={  # noqa: E731
        "gpus": gpus, "command": ["sleep", "600"], **kw}, headers=c.tenant).json()["id"]
    big = submit(8, time_limit_s=3600)
    until(c, big, lambda j: j["state"] == "running")
    w1, w2 = submit(8), submit(4)
    deadline = time.time() + 10
    while True:
        q = c.get("/v1/queue", headers=c.tenant).json()
        if [j["id"] for j in q["jobs"]] == [w1, w2] or time.time() > deadline:
            break
        time.sleep(0.1)
    assert [(j["id"], j["position"]) for j in q["jobs"]] == [(w1, 1), (w2, 2)], q
    head = q["jobs"][0]
    started = c.get(f"/v1/jobs/{big}", headers=c.tenant).json()["started_at"]
    # the head starts when the running job's time limit ends: an ISO time, not an epoch
    expected = datetime.fromisoformat(head["expected_start"])
    assert abs((expected - datetime.fromisoformat(started)).total_seconds() - 3600) < 5
    assert q["jobs"][1]["expected_start"] is None
    assert q["share"] == 1.0 and q["running_gpus"] == 8 and q["as_of"]
    # kraft jobs' filters: state, and the live jobs with those ended since a time
    running = c.get("/v1/jobs", params={"state": "running"}, headers=c.tenant).json()
    assert [j["id"] for j in running] == [big]
    c.post(f"/v1/jobs/{w2}/cancel", headers=c.tenant)
    until(c, w2, lambda j: j["state"] == "cancelled")
    later = datetime.now(UTC).isoformat()
    live_only = c.get("/v1/jobs", params={"since": later}, headers=c.tenant).json()
    assert {j["id"] for j in live_only} == {big, w1}
    bad = c.get("/v1/jobs", params={"since": "yesterday"}, headers=c.tenant)
    assert bad.status_code == 422 and "ISO" in bad.json()["detail"]

# ---- a tenant's life at runtime -------------------------------------------------------------

def test_tenant_update_tokens_and_delete_while_the_service_runs(live, db_url):
    from kraft.control import tenants
    from kraft.control.store import sessions

    c = live
    engine = make_engine(db_url)
    Session = sessions(engine)
    first = c.post("/v1/jobs", json={"gpus": 4, "command": ["sleep", "600"]},
                   headers=c.tenant).json()["id"]
    until(c, first, lambda j: j["state"] == "running")
    with Session() as s:  # lower the quota under what runs: nothing is killed, nothing starts
        tenants.update(s, "acme", {"quota_gpus": 4})
        s.commit()
    time.sleep(1.3)  # the loop reads tenants each second
    second = c.post("/v1/jobs", json={"gpus": 2, "command": ["sleep", "600"]},
                    headers=c.tenant).json()["id"]
    waiting = until(c, second, lambda j: "quota" in j["reason"], timeout=5)
    assert waiting["state"] == "admitted" and "quota 4/4 GPUs" in waiting["reason"], waiting
    assert c.get(f"/v1/jobs/{first}", headers=c.tenant).json()["state"] == "running"
    with Session() as s:  # raise it again: the waiting job starts, no restart
        tenants.update(s, "acme", {"quota_gpus": 8})
        s.commit()
    until(c, second, lambda j: j["state"] == "running", timeout=5)
    # tokens: a second live one, and one that expires
    with Session() as s:
        other, _ = tenants.add_token(s, "acme", "ci")
        brief, row = tenants.add_token(s, "acme", "brief", expires_days=1e-6)  # 86 ms
        s.commit()
    time.sleep(0.2)
    assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    expired = c.get("/v1/jobs", headers={"Authorization": f"Bearer {brief}"})
    assert expired.status_code == 401 and "expired token" in expired.text
    late = c.post("/v1/jobs", json={"gpus": 1, "command": ["true"]},
                  headers={"Authorization": f"Bearer {brief}"})
    assert late.status_code == 401  # the intake refuses it too
    # delete: refused while jobs live, then with them
    with Session() as s:
        with pytest.raises(ValueError, match="has 2 live job"):
            tenants.delete(s, "acme")
        assert tenants.delete(s, "acme", cancel_all=True) == 2
        s.commit()
    assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {other}"}).status_code == 401
    deadline = time.time() + 10  # its tokens are gone: the operator sees the jobs end
    while time.time() < deadline:
        states = {j["id"]: j for j in c.get("/admin/jobs", headers=c.op).json()}
        if {states[first]["state"], states[second]["state"]} == {"cancelled"}:
            break
        time.sleep(0.05)
    assert states[first]["reason"] == "cancelled by the operator: the tenant was deleted"
    with Session() as s, pytest.raises(LookupError, match="was deleted"):
        tenants.add_token(s, "acme")
    engine.dispose()
