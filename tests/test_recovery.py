"""Crash safety, end to end: `kraft serve` killed with SIGKILL while jobs wait and run, then
started again. No accepted job is lost and none runs twice; the running one is re-adopted."""

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
                 extra: tuple[str, ...] = (), env: dict | None = None) -> subprocess.Popen:
    args = [*KRAFT, "serve", "--data-dir", str(home), "--port", str(port), "--fleet", fleet,
            *extra]
    if db:
        args += ["--db", db]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"kraft serve did not come up: {proc.stdout.read().decode()}")


def wait(client, job_id, states, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {job}")


@pytest.fixture
def live(db_url, tmp_path):
    home = tmp_path / "home"
    db = None if db_url.startswith("sqlite") else db_url
    db_args = ["--db", db] if db else []
    out = kraft("admin", "tenant", "create", "acme", "--data-dir", str(home), *db_args).stdout
    token = re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)
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
    return tmp / "home" / "work" / tenant


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
    assert "colour: unknown field; allowed: name, gpus, command" in said
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
