"""The live control plane through its HTTP API, on SQLite and on PostgreSQL: tenant isolation,
idempotent submission, clear 4xx on bad input, real processes on logical GPUs, cancel."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from kraft.control.api import create_app
from kraft.control.auth import ensure_operator_token
from kraft.control.service import ControlPlane
from kraft.control.store import make_engine, migrate
from kraft.exec.local import LocalExecutor
from kraft.spec.load import load_fleet


@pytest.fixture
def api(db_url, tmp_path):
    engine = make_engine(db_url)
    migrate(engine)
    home = tmp_path / "home"
    op_token = ensure_operator_token(home)
    plane = ControlPlane(load_fleet("local"), engine, LocalExecutor(home / "runs"))
    with TestClient(create_app(engine, home, plane, tick_s=0.02)) as client:
        client.operator = {"Authorization": f"Bearer {op_token}"}
        yield client
    engine.dispose()


def tenant(api, name, **spec):
    r = api.post("/admin/tenants", json={"name": name, **spec}, headers=api.operator)
    assert r.status_code == 201, r.text
    body = r.json()
    return {"Authorization": f"Bearer {body['token']}"}, body["token_id"]


def wait_for(api, auth, job_id, states, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} ({job['reason']})")


SHOW = ["bash", "-c", "echo rank=$RANK gpus=$CUDA_VISIBLE_DEVICES world=$WORLD_SIZE"]


def test_job_runs_on_its_gpus_and_logs(api):
    a, _ = tenant(api, "a")
    r = api.post("/v1/jobs", json={"name": "gang", "gpus": 6, "command": SHOW}, headers=a)
    assert r.status_code == 201, r.text
    job = wait_for(api, a, r.json()["id"], {"succeeded", "failed"})
    assert job["state"] == "succeeded" and job["exit_code"] == 0
    assert [len(p["gpus"]) for p in job["placement"]] == [4, 2]
    out = api.get(f"/v1/jobs/{job['id']}/logs", headers=a).text
    assert "rank=0 gpus=0,1,2,3 world=2" in out and "rank=1 gpus=0,1 world=2" in out
    events = api.get(f"/v1/jobs/{job['id']}/events", headers=a).json()
    assert [e["to_state"] for e in events] == ["pending", "admitted", "running", "succeeded"]
    # times are UTC with their offset on both databases (SQLite stores them naive)
    times = [job["submitted_at"], job["started_at"], job["finished_at"]]
    times += [e["at"] for e in events]
    assert all(datetime.fromisoformat(t).utcoffset() == timedelta(0) for t in times), times
    assert times[:3] == sorted(times[:3])


def test_concurrent_jobs_get_distinct_gpus(api):
    a, _ = tenant(api, "a")
    # long enough that none ends (and frees GPUs for another) before all four run, even on a
    # busy machine; cancelled below
    ids = [api.post("/v1/jobs", json={"gpus": 2, "command": ["sleep", "60"]},
                    headers=a).json()["id"] for _ in range(4)]
    jobs = [wait_for(api, a, i, {"running"}) for i in ids]
    seen = set()
    for j in jobs:
        for p in j["placement"]:
            for g in p["gpus"]:
                assert (p["node"], g) not in seen, "a GPU was handed out twice"
                seen.add((p["node"], g))
    assert len(seen) == 8
    for i in ids:
        api.post(f"/v1/jobs/{i}/cancel", headers=a)
    for i in ids:
        wait_for(api, a, i, {"cancelled"})


def test_tenants_see_only_their_own_work(api):
    a, _ = tenant(api, "a")
    b, _ = tenant(api, "b")
    job_id = api.post("/v1/jobs", json={"gpus": 1, "command": ["sleep", "5"]},
                      headers=a).json()["id"]
    for method, path in [("get", f"/v1/jobs/{job_id}"), ("get", f"/v1/jobs/{job_id}/logs"),
                         ("get", f"/v1/jobs/{job_id}/events"),
                         ("post", f"/v1/jobs/{job_id}/cancel")]:
        assert getattr(api, method)(path, headers=b).status_code == 404
    assert api.get("/v1/jobs", headers=b).json() == []
    assert api.get("/v1/jobs").status_code == 401
    assert api.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/admin/audit", headers=a).status_code == 401  # tenants are not operators
    api.post(f"/v1/jobs/{job_id}/cancel", headers=a)
    wait_for(api, a, job_id, {"cancelled"})


def test_revoked_token_stops_at_once(api):
    a, token_id = tenant(api, "a")
    assert api.get("/v1/jobs", headers=a).status_code == 200
    assert api.post(f"/admin/tokens/{token_id}/revoke", headers=api.operator).status_code == 204
    assert api.get("/v1/jobs", headers=a).status_code == 401


def test_idempotent_submit(api):
    a, _ = tenant(api, "a")
    body = {"gpus": 1, "command": ["true"]}
    first = api.post("/v1/jobs", json=body, headers={**a, "Idempotency-Key": "k1"})
    again = api.post("/v1/jobs", json=body, headers={**a, "Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len(api.get("/v1/jobs", headers=a).json()) == 1


def test_bad_requests_get_4xx_with_reasons(api):
    a, _ = tenant(api, "a")
    cases = [({"gpus": 0, "command": ["true"]}, "gpus"),
             ({"gpus": 1}, "command"),
             ({"gpus": 1, "command": ["true"], "tenant": "b"}, "tenant"),
             ({"gpus": "many", "command": ["true"]}, "gpus")]
    for body, field in cases:
        r = api.post("/v1/jobs", json=body, headers=a)
        assert r.status_code == 422, (body, r.text)
        assert any(field in d["loc"] for d in r.json()["detail"]), r.text
    # an unknown field is named with the fields allowed there (a tenant is the token's)
    [extra] = api.post("/v1/jobs", json={"gpus": 1, "command": ["true"], "tenant": "b"},
                       headers=a).json()["detail"]
    assert extra["loc"] == ["body", "tenant"] and extra["msg"].startswith(
        "unknown field; allowed: name, gpus, gpu_model, time_limit_s"), extra
    assert api.get("/v1/jobs/notanumber", headers=a).status_code == 422
    assert api.get("/v1/jobs/999999", headers=a).status_code == 404
    # a gang no site can hold is accepted, then rejected by the scheduler with its reason
    job_id = api.post("/v1/jobs", json={"gpus": 64, "command": ["true"]}, headers=a).json()["id"]
    job = wait_for(api, a, job_id, {"rejected"})
    assert "larger than any allowed pool" in job["reason"]


def test_cancel_stops_the_process(api):
    a, _ = tenant(api, "a")
    job_id = api.post("/v1/jobs", json={"gpus": 1, "command": ["sleep", "30"]},
                      headers=a).json()["id"]
    wait_for(api, a, job_id, {"running"})
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=a).status_code == 202
    job = wait_for(api, a, job_id, {"cancelled"})
    pid = job["placement"][0]["pid"]
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the cancelled job's process still runs")
    audit = api.get("/admin/audit", headers=api.operator).json()
    assert {"job.submit", "job.cancel", "tenant.create"} <= {e["action"] for e in audit}


def test_one_batch_sorts_out_tokens_and_retries(db_url, tmp_path):
    """Group commit: within one transaction, a revoked token is refused, a retried key gets
    the first job (also when both copies are in the same batch), and keys are per tenant."""
    from kraft.control.api import add_tenant
    from kraft.control.auth import hash_token
    from kraft.control.intake import Intake, Submission
    from kraft.control.store import AuditRow, EventRow, JobRow, TokenRow, sessions
    from kraft.spec.models import TenantSpec

    engine = make_engine(db_url)
    migrate(engine)
    with sessions(engine)() as s:
        a, b, gone = (add_tenant(s, TenantSpec(name=n)) for n in ("a", "b", "c"))
        s.get(TokenRow, gone.token_id).revoked = True
        s.commit()

    def item(tok, key):
        return Submission(hash_token(tok.token), key, "j", {"gpus": 1, "command": ["true"]},
                          "10.0.0.1")

    intake = Intake(engine)
    first = intake.write([item(a, "k")])[0]
    out = intake.write([item(a, "k"), item(a, "n"), item(a, "n"), item(b, "k"),
                        item(gone, "x"), item(a, None), item(a, None)])
    assert first.created and first.tenant == "a"
    assert (out[0].job_id, out[0].created) == (first.job_id, False)  # retry from earlier
    assert out[1].created and (out[2].job_id, out[2].created) == (out[1].job_id, False)
    assert out[3].created and out[3].tenant == "b" and out[3].job_id != first.job_id
    assert out[4].tenant is None  # revoked
    assert out[5].created and out[6].created and out[5].job_id != out[6].job_id  # no key
    with sessions(engine)() as s:
        rows = s.query(JobRow).order_by(JobRow.id).all()
        assert [(r.tenant, r.idempotency_key) for r in rows] == [
            ("a", "k"), ("a", "n"), ("b", "k"), ("a", None), ("a", None)]
        assert all(r.spec["tenant"] == r.tenant for r in rows)
        # each new job has exactly its own first event and audit row, nothing for a retry
        events = s.query(EventRow).order_by(EventRow.job_id).all()
        assert [(e.job_id, e.to_state) for e in events] == [(r.id, "pending") for r in rows]
        audit = s.query(AuditRow).filter(AuditRow.action == "job.submit").all()
        assert sorted((e.target, e.actor, e.address) for e in audit) == sorted(
            (str(r.id), r.tenant, "10.0.0.1") for r in rows)
    engine.dispose()


def test_two_writers_racing_on_one_key_make_one_job():
    """Two API processes on one PostgreSQL (two engines here) submit the same key at once,
    in batches that overlap: exactly one job per key, and both answers name it."""
    import threading

    from conftest import _drop, _postgres_url

    from kraft.control.api import add_tenant
    from kraft.control.auth import hash_token
    from kraft.control.intake import Intake, Submission
    from kraft.control.store import EventRow, JobRow, sessions
    from kraft.spec.models import TenantSpec

    url = _postgres_url()
    engines = [make_engine(url), make_engine(url)]
    try:
        migrate(engines[0])
        with sessions(engines[0])() as s:
            token = add_tenant(s, TenantSpec(name="a")).token
            s.commit()
        keys = [f"k{i}" for i in range(200)]
        answers: list[list] = [[], []]
        start = threading.Barrier(2)

        def writer(n):
            intake = Intake(engines[n])
            start.wait()
            for i in range(0, len(keys), 20):
                answers[n] += intake.write([
                    Submission(hash_token(token), k, "j", {"gpus": 1, "command": ["true"]},
                               "10.0.0.1") for k in keys[i:i + 20]])

        threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.job_id for a in answers[0]] == [a.job_id for a in answers[1]]
        assert all(a.created != b.created for a, b in zip(*answers))  # one made it
        with sessions(engines[0])() as s:
            assert s.query(JobRow).count() == len(keys)
            assert s.query(EventRow).count() == len(keys)
    finally:
        for e in engines:
            e.dispose()
        _drop(url)


def test_intake_survives_a_lost_database_connection():
    """The writer keeps one PostgreSQL connection; when the server drops it (a restart, a
    failover), the next submit after a quiet second reconnects instead of failing."""
    import psycopg
    from conftest import PG_ADMIN, _drop, _postgres_url

    from kraft.control import intake as intake_module
    from kraft.control.api import add_tenant
    from kraft.control.auth import hash_token
    from kraft.control.intake import Intake, Submission
    from kraft.control.store import sessions
    from kraft.spec.models import TenantSpec

    url = _postgres_url()
    engine = make_engine(url)
    try:
        migrate(engine)
        with sessions(engine)() as s:
            token = add_tenant(s, TenantSpec(name="a")).token
            s.commit()
        intake = Intake(engine)

        def submit():
            return intake.write([Submission(hash_token(token), None, "j",
                                            {"gpus": 1, "command": ["true"]}, "10.0.0.1")])[0]

        first = submit()
        backend = intake.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", [backend]).fetchone()[0]
        intake.used_at -= intake_module.IDLE_CHECK_S + 1  # as after a quiet second
        second = submit()
        assert second.created and second.job_id > first.job_id
        assert intake.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend
    finally:
        engine.dispose()
        _drop(url)


def test_local_executor_finds_only_its_own_runners(tmp_path):
    """Two deployments on one machine both have a job 1: each finds only its own process."""
    from kraft.exec.base import Rank, RunRequest

    mine, theirs = LocalExecutor(tmp_path / "a"), LocalExecutor(tmp_path / "b")
    req = RunRequest(1, 1, ("sleep", "30"), (Rank("n0", (0,)),))
    pids = theirs.start(req)
    try:
        deadline = time.time() + 5  # until the runner has exec'd (its argv is there)
        while theirs.find(req) != pids and time.time() < deadline:
            time.sleep(0.02)
        assert theirs.find(req) == pids
        assert mine.find(req) == [None]  # by rank: none of it alive here
        assert not mine.status(req, pids).running  # and never stops or adopts theirs
    finally:
        theirs.stop(req, pids)


def test_prometheus_metrics_for_the_operator_only(api):
    a, _ = tenant(api, "a")
    job_id = api.post("/v1/jobs", json={"gpus": 3, "command": ["sleep", "30"]},
                      headers=a).json()["id"]
    wait_for(api, a, job_id, {"running"})
    assert api.get("/metrics", headers=a).status_code == 401  # tenants are not operators
    r = api.get("/metrics", headers=api.operator)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values['kraft_gpus{site="local"}'] == 8
    assert values['kraft_gpus_allocated{site="local"}'] == 3
    assert values['kraft_jobs{state="running"}'] == 1
    assert values["kraft_scheduling_cycle_seconds_count"] > 0
    # 3 busy H100 at 700 W and 5 idle at 70 W, host overhead 0.8: 4,410 W
    assert values['kraft_it_power_watts{site="local"}'] == pytest.approx((3 * 700 + 5 * 70) * 1.8)
    # no weather series: 15 C, inside free cooling (up to 18 C): PUE 1.10 exactly
    assert values['kraft_site_pue{site="local"}'] == pytest.approx(1.10)
    assert values['kraft_facility_power_watts{site="local"}'] == pytest.approx(
        (3 * 700 + 5 * 70) * 1.8 * 1.10)
    assert values['kraft_grid_carbon_g_per_kwh{site="local",zone="NO-NO1"}'] > 0
    # the live books per tenant: 3 GPUs for as long as the job has run so far
    started = api.get(f"/v1/jobs/{job_id}/attempts", headers=a).json()[0]["start"]
    ran_s = time.time() - datetime.fromisoformat(started).timestamp()
    assert 0 < values['kraft_tenant_gpu_seconds_total{tenant="a"}'] <= 3 * ran_s
    assert values['kraft_tenant_it_kwh_total{tenant="a"}'] == pytest.approx(
        values['kraft_tenant_gpu_seconds_total{tenant="a"}'] * 700 * 1.8 / 3.6e6, rel=0.05)
    assert values['kraft_tenant_carbon_location_kg_total{tenant="a"}'] > 0
    api.post(f"/v1/jobs/{job_id}/cancel", headers=a)
    wait_for(api, a, job_id, {"cancelled"})


def test_jobs_inherit_only_the_allow_list(api, monkeypatch):
    """With PROMETHEUS_MULTIPROC_DIR (set by kraft serve) a job using prometheus_client would
    write into Kraft's own /metrics, and KRAFT_DB may hold a password: a job's environment is
    an allow-list (PATH, LANG, ...), never the service's own settings."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/kraft-metrics")
    monkeypatch.setenv("KRAFT_TEST_MARK", "inherited")
    a, _ = tenant(api, "a")
    cmd = ["bash", "-c", "echo mark=$KRAFT_TEST_MARK prom=${PROMETHEUS_MULTIPROC_DIR:-unset}"]
    job_id = api.post("/v1/jobs", json={"gpus": 1, "command": cmd}, headers=a).json()["id"]
    wait_for(api, a, job_id, {"succeeded"})
    out = api.get(f"/v1/jobs/{job_id}/logs", headers=a).text
    assert "mark= prom=unset" in out, out


def test_a_failed_database_write_is_a_503_and_the_writer_goes_on(api, monkeypatch):
    """The intake's writer thread answers every submit of a batch the database refused with
    a 503 (retry), keeps running, and accepts the retry."""
    from sqlalchemy.exc import OperationalError

    from kraft.control.intake import Intake

    a, _ = tenant(api, "a")
    write = Intake.write
    fail = {"left": 1}

    def flaky(self, batch):
        if fail["left"]:
            fail["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return write(self, batch)

    monkeypatch.setattr(Intake, "write", flaky)
    key = {"Idempotency-Key": "retry-me", **a}
    body = {"gpus": 1, "command": ["true"]}
    r = api.post("/v1/jobs", json=body, headers=key)
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert "Idempotency-Key" in r.json()["detail"]
    assert api.get("/v1/jobs", headers=a).json() == []
    r = api.post("/v1/jobs", json=body, headers=key)
    assert r.status_code == 201, r.text
    assert api.post("/v1/jobs", json=body, headers=key).json()["id"] == r.json()["id"]


def test_intake_closed_and_used_again_starts_a_new_writer(db_url):
    """An app stopped and started again (its lifespan twice, on two event loops): the writer
    stopped at close, and the next submit starts a new one instead of waiting forever."""
    import asyncio

    from kraft.control.api import add_tenant
    from kraft.control.auth import hash_token
    from kraft.control.intake import Intake, Submission
    from kraft.control.store import sessions
    from kraft.spec.models import TenantSpec

    engine = make_engine(db_url)
    migrate(engine)
    with sessions(engine)() as s:
        token = add_tenant(s, TenantSpec(name="a")).token
        s.commit()
    intake = Intake(engine)

    async def serve_once():
        job = Submission(hash_token(token), None, "j", {"gpus": 1, "command": ["true"]}, "")
        accepted = await asyncio.wait_for(intake.submit(job), timeout=10)
        await intake.close()
        return accepted

    first, second = asyncio.run(serve_once()), asyncio.run(serve_once())
    assert first.created and second.created and second.job_id > first.job_id
    assert intake.thread is None  # stopped, not left behind
    engine.dispose()


def test_times_do_not_depend_on_the_servers_time_zone(api, monkeypatch):
    """SQLite hands stored times back without a zone; a server in Oslo (UTC+1) must still
    read them as UTC: a job started just now has run for seconds, not an hour."""
    monkeypatch.setenv("TZ", "Europe/Oslo")
    time.tzset()
    try:
        a, _ = tenant(api, "a")
        job_id = api.post("/v1/jobs", json={"gpus": 1, "command": ["sleep", "60"]},
                          headers=a).json()["id"]
        job = wait_for(api, a, job_id, {"running"})
        started = datetime.fromisoformat(job["started_at"])
        assert abs(started.timestamp() - time.time()) < 30, job["started_at"]
        board = api.get("/admin/dashboard", headers=api.operator).json()
        [running] = [r for r in board["running"] if r["id"] == job_id]
        assert 0 <= running["running_s"] < 30, running
        api.post(f"/v1/jobs/{job_id}/cancel", headers=a)
        wait_for(api, a, job_id, {"cancelled"})
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_power_gauge_uses_this_hours_temperature(tmp_path):
    """Facility power = IT power x the PUE at the hour's outdoor temperature (the Bergen series
    at 2026-07-15 12:00 UTC reads hour 4,692 of the 2024 series), not a fixed 15 C."""
    from kraft.control.metrics import FleetCollector
    from kraft.control.store import sessions
    from kraft.signals.series import load_series
    from kraft.spec.models import FleetSpec

    fleet = FleetSpec.model_validate({"name": "warm", "sites": [{
        "name": "bergen", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO5",
        "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 40, "weather": "bergen",
        "cooling": {"pue_free": 1.1, "free_cooling_max_c": 5, "pue_hot": 1.5, "hot_c": 25},
        "pods": [{"name": "pod", "nodes": [{"count": 1, "gpus": 8, "model": "H100-SXM"}]}]}]})
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    migrate(engine)
    at = datetime(2026, 7, 15, 12, tzinfo=UTC).timestamp()
    hour = (31 + 28 + 31 + 30 + 31 + 30 + 14) * 24 + 12  # hours of 2026 before it: 4,692
    temp = float(load_series("temperature", "bergen").values[hour])
    pue = 1.1 + min(max((temp - 5) / 20, 0), 1) * 0.4
    assert pue > 1.1, "a July noon in Bergen is past the 5 C free-cooling limit"
    site = FleetCollector(fleet, sessions(engine)).snapshot(now=at)["sites"][0]
    assert site["it_w"] == pytest.approx(8 * 70 * 1.8)
    assert site["outdoor_c"] == pytest.approx(temp)
    assert site["pue"] == pytest.approx(pue)
    assert site["facility_w"] == pytest.approx(8 * 70 * 1.8 * pue)


def _null_plane(engine, clock, executor=None):
    from kraft.exec.null import NullExecutor

    plane = ControlPlane(load_fleet("local"), engine, executor or NullExecutor(clock),
                         clock=clock, single_user=True)
    plane.recover(clock())
    return plane


def _pending(engine, n: int, seconds: int, at: float) -> None:
    from sqlalchemy import insert

    from kraft.control.api import add_tenant
    from kraft.control.store import JobRow, TenantRow, sessions
    from kraft.spec.models import JobSpec, TenantSpec

    spec = JobSpec(tenant="acme", gpus=1, command=["sleep", str(seconds)])
    with sessions(engine)() as s:
        if s.get(TenantRow, "acme") is None:
            add_tenant(s, TenantSpec(name="acme"))
        s.execute(insert(JobRow.__table__), [dict(
            tenant="acme", name=f"j{k}", state="pending", spec=spec.model_dump(mode="json"),
            submitted_s=at) for k in range(n)])
        s.commit()


class _Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_restarted_service_readopts_the_null_executors_jobs_from_their_handles(db_url):
    """`executor: {kind: null}` runs `kraft serve` at fleet scale; after a SIGKILL the new
    process has a fresh executor, and must re-adopt what still 'runs' (its end is in the
    handles on record), not requeue it, and see it end on time."""
    from kraft.control.store import JobRow, sessions

    engine = make_engine(db_url)
    migrate(engine)
    clock = _Clock(1_000_000.0)
    _pending(engine, 3, 600, clock.t)
    first = _null_plane(engine, clock)
    first.step()
    assert len(first.runs) == 3
    for req, handles in first.runs.values():  # found after a crash as start gave them
        assert first.executor.find(req) == handles
    clock.t += 300
    again = _null_plane(engine, clock)  # a new process: nothing of the old executor is left
    assert set(again.runs) == set(first.runs)
    with sessions(engine)() as s:
        assert {(r.state, r.attempt) for r in s.query(JobRow)} == {("running", 1)}
    clock.t += 299
    again.step()
    assert len(again.runs) == 3  # 599 s of 600
    clock.t += 2
    again.step()
    with sessions(engine)() as s:
        assert {(r.state, r.attempt) for r in s.query(JobRow)} == {("succeeded", 1)}
    engine.dispose()


def test_the_engine_is_polled_at_most_a_fifth_of_the_time(tmp_path):
    """A poll of 10,000 attempts (or one `squeue`) costs more than a 50 ms step can give on
    every step: after a poll that took P, the next is at least 4 P later on the loop's clock;
    jobs still end, just that much later."""
    from kraft.exec.null import NullExecutor

    class SlowEngine(NullExecutor):
        polls = 0

        def status_many(self, runs):
            SlowEngine.polls += 1
            time.sleep(0.02)
            return super().status_many(runs)

    engine = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(engine)
    clock = _Clock(1_000_000.0)
    _pending(engine, 2, 1, clock.t)
    plane = _null_plane(engine, clock, SlowEngine(clock))
    plane.step()
    assert len(plane.runs) == 2
    clock.t += 0.5
    plane.step()  # past the budget: a poll (20 ms), both still running
    polls = SlowEngine.polls
    for _ in range(3):  # 10 ms apart on the loop's clock: within 4 x 20 ms of that poll
        clock.t += 0.01
        plane.step()
    assert SlowEngine.polls == polls and len(plane.runs) == 2
    clock.t += 1  # past their end and the budget: polled, and both ended
    plane.step()
    assert SlowEngine.polls == polls + 1 and not plane.runs
    engine.dispose()


def test_the_null_executor_forgets_what_is_over():
    """It kept every attempt it ever saw (~100 bytes each, millions in a long load test):
    now only those still running; a finished one polled again (after a restart) is still
    seen as done, from its handles."""
    from kraft.exec.base import Rank, RunRequest
    from kraft.exec.null import DONE, RUNNING, STOPPED, NullExecutor

    clock = _Clock(1000.0)
    ex = NullExecutor(clock)

    def req(i):
        return RunRequest(job_id=i, attempt=1, command=("sleep", str(i)),
                          ranks=(Rank("n0", (0,)),))
    runs = [(req(i), ex.start(req(i))) for i in range(1, 1001)]
    ex.stop(*runs[-1])
    clock.t += 500.5
    polled = ex.status_many(runs)
    assert polled.count(DONE) == 500 and polled.count(RUNNING) == 499
    assert polled[-1] == STOPPED
    assert len(ex.ends) == 499  # only what still runs
    assert ex.status_many(runs[-1:]) == [STOPPED]  # stopped stays stopped
    assert ex.status_many(runs[:1]) == [DONE]  # polled again: done, from its handle
    clock.t += 1000
    ex.status_many(runs)
    assert not ex.ends
