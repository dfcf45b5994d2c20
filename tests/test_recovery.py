"""Crash safety, end to end: `kraft serve` killed with SIGKILL while jobs wait and run, then
started again. No accepted job is lost and none runs twice; the running one is re-adopted."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kraft.exec.runner import descendants

KRAFT = [sys.executable, "-m", "kraft.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kraft(*args, env=None, check=True) -> subprocess.CompletedProcess:
    return subprocess.run([*KRAFT, *args], capture_output=True, text=True, env=env,
                          check=check, timeout=60)


def start_server(home: Path, port: int, db: str | None, fleet: str = "local",
                 extra: tuple[str, ...] = (), env: dict | None = None,
                 log: Path | None = None) -> subprocess.Popen:
    """`kraft serve`, once it answers; its output to `log` (readable while it runs), or a
    pipe."""
    args = [*KRAFT, "serve", "--data-dir", str(home), "--port", str(port), "--fleet", fleet,
            *extra]
    if db:
        args += ["--db", db]
    out = open(log, "wb") if log else subprocess.PIPE
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    said = log.read_text() if log else proc.stdout.read().decode()
    raise AssertionError(f"kraft serve did not come up: {said}")


def wait(client, job_id, states, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {job}")


def seconds_to_gone(client, job_id, alive, timeout=30) -> float:
    """Seconds from a job's stop being on record (cancelled, failed by its time limit, or
    preempted and queued again) to the moment `alive()` says its last process is gone."""
    stopped_at = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/v1/jobs/{job_id}").json()["state"]
        if stopped_at is None and state in ("cancelled", "failed", "preempted", "admitted"):
            stopped_at = time.time()
        if stopped_at is not None and not alive():
            return time.time() - stopped_at
        time.sleep(0.02)
    raise AssertionError(f"job {job_id}: {'never stopped' if stopped_at is None else 'alive'}")


def acme(db_url: str, tmp_path: Path) -> tuple[Path, str | None, str]:
    """(state folder, --db or None for SQLite, token) of a tenant `acme` made by the CLI."""
    home = tmp_path / "home"
    db = None if db_url.startswith("sqlite") else db_url
    db_args = ["--db", db] if db else []
    out = kraft("admin", "tenant", "create", "acme", "--data-dir", str(home), *db_args).stdout
    return home, db, re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)


@pytest.fixture
def live(db_url, tmp_path):
    home, db, token = acme(db_url, tmp_path)
    port = free_port()
    servers = []

    def server():
        servers.append(start_server(home, port, db))
        return servers[-1]

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    yield server, client, tmp_path, token, port
    client.close()
    for p in servers:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)


def work(tmp: Path, tenant: str = "acme") -> Path:
    """The tenant's work directory under `kraft serve --data-dir tmp/home`: its jobs' cwd
    (a sandboxed job sees no other part of the test's folder)."""
    return tmp / "home" / "homes" / tenant


def test_sigkill_loses_nothing_and_runs_nothing_twice(live):
    server, client, tmp, _, _ = live
    mark, release = work(tmp) / "mark", work(tmp) / "release"
    first = server()
    # 8 GPUs: both nodes, so two ranks; each notes its start and end, and runs until the test
    # releases it (a fixed sleep raced the restart on a slow machine: the job could end first)
    long_job = {"name": "long", "gpus": 8, "command": [
        "bash", "-c", "echo start-$RANK >> mark; for i in $(seq 600); do "
                      "[ -f release ] && break; sleep 0.1; done; echo end-$RANK >> mark"]}
    a = client.post("/v1/jobs", json=long_job, headers={"Idempotency-Key": "a"}).json()["id"]
    b = client.post("/v1/jobs", json={"name": "after", "gpus": 1, "command": ["true"]}).json()["id"]
    wait(client, a, {"running"})
    assert client.get(f"/v1/jobs/{b}").json()["state"] in ("pending", "admitted")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # a retried submit while the service was down: answered after restart with the same job
    second = server()
    again = client.post("/v1/jobs", json=long_job, headers={"Idempotency-Key": "a"})
    assert again.status_code == 200 and again.json()["id"] == a
    deadline = time.time() + 30
    while time.time() < deadline and not any(
            "re-adopted" in e["detail"] for e in client.get(f"/v1/jobs/{a}/events").json()):
        time.sleep(0.1)
    release.touch()
    job_a = wait(client, a, {"succeeded", "failed"})
    job_b = wait(client, b, {"succeeded", "failed"})
    assert job_a["state"] == job_b["state"] == "succeeded"
    assert sorted(mark.read_text().split()) == ["end-0", "end-1", "start-0", "start-1"], \
        "the running job ran twice"
    assert job_a["attempt"] == 1
    details = [e["detail"] for e in client.get(f"/v1/jobs/{a}/events").json()]
    assert any("re-adopted" in d for d in details), details
    assert len(client.get("/v1/jobs").json()) == 2
    second.send_signal(signal.SIGTERM)


def test_job_that_died_with_the_host_is_requeued_once(live):
    server, client, tmp, _, _ = live
    mark = work(tmp) / "mark"
    first = server()
    job = {"gpus": 2, "command": ["bash", "-c", "echo start >> mark; sleep 2"]}
    a = client.post("/v1/jobs", json=job).json()["id"]
    running = wait(client, a, {"running"})
    deadline = time.time() + 10  # "running" is recorded before the process exists
    while not (mark.exists() and running["placement"][0].get("pid")) and time.time() < deadline:
        time.sleep(0.05)
        running = client.get(f"/v1/jobs/{a}").json()
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    runner = running["placement"][0]["pid"]  # the job dies too, with no exit status
    for pid in [*descendants(runner), runner]:
        with contextlib.suppress(ProcessLookupError):  # one may end between list and kill
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    server()
    done = wait(client, a, {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempt"] == 2
    assert mark.read_text().split() == ["start", "start"]
    states = [e["to_state"] for e in client.get(f"/v1/jobs/{a}/events").json()]
    assert "preempted" in states  # requeued by the recovery rule


def test_cli_end_to_end(live, tmp_path):
    server, _, tmp, token, port = live
    server()
    env = {**os.environ, "KRAFT_SERVER": f"http://127.0.0.1:{port}", "KRAFT_TOKEN": token}
    spec = tmp_path / "job.yaml"
    spec.write_text('name: hi\ngpus: 1\ncommand: ["bash", "-c", "echo hello from $CUDA_VISIBLE_DEVICES"]\n')
    out = kraft("submit", str(spec), env=env).stdout
    job_id = re.search(r"job (\d+)", out).group(1)
    logs = kraft("logs", job_id, "-f", env=env).stdout
    assert "hello from 0" in logs
    assert "succeeded" in kraft("jobs", env=env).stdout
    bad = kraft("submit", str(spec), env={**env, "KRAFT_TOKEN": "kt_wrong"}, check=False)
    assert bad.returncode == 2 and "401" in bad.stderr and "Traceback" not in bad.stderr
    # a spec the server refuses names the file, the field and what is allowed
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: hi\ngpus: 0\ncommand: [true]\ncolour: red\n")
    bad = kraft("submit", str(wrong), env=env, check=False)
    said = " ".join(bad.stderr.split())  # Rich wraps long lines
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{wrong}: refused (422)" in said and "gpus: Input should be greater than or equal to 1" in said
    assert "colour: unknown field; allowed: name, gpus, gpu_model" in said
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [hi\n")
    bad = kraft("submit", str(broken), env=env, check=False)
    assert bad.returncode == 2 and f"{broken}: not valid YAML at line 2" in " ".join(bad.stderr.split())
    # a server that is not there is said plainly, for every tenant command
    gone = {**env, "KRAFT_SERVER": f"http://127.0.0.1:{free_port()}"}
    for args in (["jobs"], ["submit", str(spec)], ["logs", job_id]):
        bad = kraft(*args, env=gone, check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert "cannot reach the Kraft server" in " ".join(bad.stderr.split())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: a thread
def test_serve_stops_when_its_loop_process_dies(live):
    """On PostgreSQL the loop is a child process: if it dies, the service stops instead of
    accepting work nobody schedules."""
    server, client, _, _, _ = live
    proc = server()
    deadline = time.time() + 10
    loops = []
    while not loops and time.time() < deadline:  # the child that is not the resource tracker
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        loops = [int(k) for k in kids
                 if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
        time.sleep(0.1)
    assert loops, "no loop process under kraft serve"
    os.kill(loops[0], signal.SIGKILL)
    assert proc.wait(timeout=15) is not None
    assert b"the scheduling loop exited" in proc.stdout.read()


def test_a_gang_whose_rank_vanishes_ends_whole(live):
    """All or nothing in life as at start: a rank gone without an exit status (its host
    died, say) ends the attempt, and the other rank is stopped, not left running."""
    server, client, _, _, _ = live
    server()
    a = client.post("/v1/jobs", json={"gpus": 8, "command": ["sleep", "600"]}).json()["id"]
    job = wait(client, a, {"running"})
    deadline = time.time() + 10
    while not all(p.get("pid") for p in job["placement"]) and time.time() < deadline:
        time.sleep(0.05)
        job = client.get(f"/v1/jobs/{a}").json()
    r0, r1 = (p["pid"] for p in job["placement"])
    while len(descendants(r0)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    rank0 = [r0, *descendants(r0)]
    for pid in [*descendants(r1), r1]:
        with contextlib.suppress(ProcessLookupError):  # gone with its parent already
            os.kill(pid, signal.SIGKILL)
    done = wait(client, a, {"failed", "succeeded", "preempted", "admitted"})
    assert done["state"] == "failed" and "rank vanished" in done["reason"], done
    deadline = time.time() + 5
    while any(Path(f"/proc/{p}").exists() for p in rank0) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{p}").exists() for p in rank0), "rank 0 was left running"


def test_a_crash_between_two_ranks_starts_runs_no_rank_twice(tmp_path, monkeypatch):
    """The service dies after starting rank 0 of a gang and before rank 1: the next start
    launches rank 1 only, for the same attempt; rank 0 is never run again."""
    from kraft.control.api import add_tenant
    from kraft.control.service import ControlPlane
    from kraft.control.store import EventRow, JobRow, make_engine, migrate, sessions
    from kraft.exec.local import LocalExecutor
    from kraft.spec.load import load_fleet
    from kraft.spec.models import JobSpec, TenantSpec

    engine = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(engine)
    mark = tmp_path / "marks"
    spec = JobSpec(tenant="a", gpus=8, command=[
        "bash", "-c", f"echo $KRAFT_JOB_ID $KRAFT_ATTEMPT $RANK >> {mark}"])
    with sessions(engine)() as s:
        add_tenant(s, TenantSpec(name="a"))
        s.add(JobRow(tenant="a", name="gang", spec=spec.model_dump(mode="json"),
                     state="pending", reason="", attempt=0, submitted_s=time.time()))
        s.commit()

    class Crash(BaseException):
        pass
    start = LocalExecutor.start

    def start_rank0_then_die(self, req, only=None):
        if only is None:
            start(self, req, only=[0])
            raise Crash
        return start(self, req, only)
    monkeypatch.setattr(LocalExecutor, "start", start_rank0_then_die)
    plane = ControlPlane(load_fleet("local"), engine, LocalExecutor(tmp_path / "runs"))
    plane.recover(time.time())
    with pytest.raises(Crash):
        for _ in range(100):
            plane.step()
    monkeypatch.undo()
    again = ControlPlane(load_fleet("local"), engine, LocalExecutor(tmp_path / "runs"))
    again.recover(time.time())
    deadline = time.time() + 20
    while time.time() < deadline:
        again.step()
        with sessions(engine)() as s:
            row = s.get(JobRow, 1)
        if row.state in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    with sessions(engine)() as s:
        events = [(e.to_state, e.detail) for e in s.query(EventRow).order_by(EventRow.id)]
    assert row.state == "succeeded" and row.attempt == 1, events
    assert sorted(mark.read_text().splitlines()) == ["1 1 0", "1 1 1"]


def test_serve_says_what_it_does_and_answers_probes(db_url, tmp_path):
    """`kraft serve` logs where it listens, what recovery found (re-adopted, requeued,
    finished while down) and the loop's start; /healthz and /readyz answer without a token."""
    home, db, token = acme(db_url, tmp_path)
    port = free_port()
    first = start_server(home, port, db, log=tmp_path / "first.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    release = work(tmp_path) / "release"
    hold = ["bash", "-c", "for i in $(seq 600); do [ -f release ] && break; sleep 0.1; done"]
    a = client.post("/v1/jobs", json={"gpus": 8, "command": hold}).json()["id"]
    b = client.post("/v1/jobs", json={"gpus": 1, "command": ["true"]}).json()["id"]
    wait(client, a, {"running"})
    wait(client, b, {"admitted"})
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = start_server(home, port, db, log=tmp_path / "second.log")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok", ready.text
        deadline = time.time() + 20
        log = (tmp_path / "second.log").read_text()
        while "scheduling loop started" not in log and time.time() < deadline:
            time.sleep(0.2)  # on PostgreSQL the loop takes the lease after the API is up
            log = (tmp_path / "second.log").read_text()
        assert f"listening on http://127.0.0.1:{port}" in log, log
        assert ("recovered 2 unfinished jobs: 1 back in the queue, 1 re-adopted (running)"
                in log), log
        assert "scheduling loop started: policy backfill, a step every 50 ms" in log, log
        assert "Traceback" not in log
        release.touch()
        assert wait(client, a, {"succeeded", "failed"})["state"] == "succeeded"
        assert wait(client, b, {"succeeded", "failed"})["state"] == "succeeded"
    finally:
        client.close()
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)


def test_readyz_is_503_when_the_database_is_away(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    from kraft.control.api import create_app

    away = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/kraft",
                         connect_args={"connect_timeout": 2})
    with TestClient(create_app(away, tmp_path)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert r.json()["database"].startswith("unreachable"), r.text
