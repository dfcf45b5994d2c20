"""Who a job runs as and what it sees, piece by piece: the one-tenant rule of a service that
cannot give accounts, the devices a sandboxed job sees, a start that fails part way, and no
password on a command line."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kraft.exec.base import Rank, RunRequest
from kraft.exec.identity import Identity, Isolation
from kraft.exec.local import LocalExecutor

KRAFT = [sys.executable, "-m", "kraft.cli"]
root_and_bwrap = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap"),
    reason="SKIPPED: needs root and bubblewrap (apt-get install bubblewrap); CI has both")


def _plane(tmp_path, single_user: bool):
    from kraft.control.api import add_tenant
    from kraft.control.service import ControlPlane
    from kraft.control.store import JobRow, make_engine, migrate, sessions
    from kraft.spec.load import load_fleet
    from kraft.spec.models import JobSpec, TenantSpec

    engine = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(engine)
    with sessions(engine)() as s:
        for name in ("first", "second"):
            add_tenant(s, TenantSpec(name=name))
            s.commit()
            time.sleep(0.01)  # created one after the other
        for name in ("first", "second"):
            s.add(JobRow(tenant=name, name=name, state="pending", reason="", attempt=0,
                         spec=JobSpec(tenant=name, gpus=1, command=["true"]).model_dump(
                             mode="json"), submitted_s=time.time()))
        s.commit()
    iso = Isolation(accounts=False, sandbox=False, work_root=tmp_path / "homes")
    plane = ControlPlane(load_fleet("local"), engine, LocalExecutor(tmp_path / "runs", iso),
                         isolation=iso, single_user=single_user)
    plane.step()
    with sessions(engine)() as s:
        return {r.tenant: (r.state, r.reason) for r in s.query(JobRow)}


def test_without_accounts_only_the_first_tenant_runs(tmp_path):
    states = _plane(tmp_path, single_user=False)
    assert states["first"][0] in ("admitted", "running")
    assert states["second"][0] == "rejected"
    assert "cannot isolate tenants" in states["second"][1] and "--single-user" in states[
        "second"][1]


def test_single_user_runs_every_tenant(tmp_path):
    states = _plane(tmp_path, single_user=True)
    assert {s for s, _ in states.values()} <= {"admitted", "running"}, states


@root_and_bwrap
def test_a_sandboxed_job_sees_only_its_own_gpu_devices(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for n in (1, 2):
        for g in range(4):  # logical GPUs, as scripts/engines/slurm-up.sh makes them
            subprocess.run(["mknod", str(dev / f"node{n}gpu{g}"), "c", "1", "3"], check=True)
    iso = Isolation(accounts=True, sandbox=True, work_root=tmp_path / "homes")
    ex = LocalExecutor(tmp_path / "runs", iso, gpu_devices=str(dev / "{node}gpu{gpu}"),
                       node_names={"s/pod-n000": "node1", "s/pod-n001": "node2"})
    req = RunRequest(1, 1, ("bash", "-c", f"ls {dev}; id -un; ls /dev | tr '\\n' ' '"),
                     (Rank("s/pod-n000", (1, 3)),), identity=Identity("devtest"))
    pids = ex.start(req)
    deadline = time.time() + 10
    while ex.status(req, pids).running and time.time() < deadline:
        time.sleep(0.05)
    status = ex.status(req, pids)
    out = ex.log_path(1, 1).read_text()
    assert not status.lost, (status, Path(f"/proc/{pids[0]}").exists(), out)
    assert out.split()[:3] == ["node1gpu1", "node1gpu3", "kraft-devtest"], out
    assert "sda" not in out and "vda" not in out  # no disks: only the basic devices
    subprocess.run(["userdel", "kraft-devtest"], capture_output=True)


def test_a_start_that_fails_part_way_stops_the_ranks_already_started(tmp_path, monkeypatch):
    import kraft.exec.local as local

    ex = LocalExecutor(tmp_path / "runs")
    req = RunRequest(1, 1, ("sleep", "60"), (Rank("a", (0,)), Rank("b", (0,))))
    started = []
    real = subprocess.Popen

    def second_fails(*a, **kw):
        if started:
            raise OSError("no more processes")
        started.append(real(*a, **kw))
        return started[-1]
    monkeypatch.setattr(local.subprocess, "Popen", second_fails)
    with pytest.raises(OSError):
        ex.start(req)
    assert started and started[0].wait(timeout=5) is not None, "rank 0 was left running"


def test_no_password_on_the_command_line(tmp_path):
    url = "postgresql://kraft:s3cret@127.0.0.1:1/kraft"
    args = [*KRAFT, "admin", "tenant", "list", "--data-dir", str(tmp_path)]
    said = subprocess.run([*args, "--db", url], capture_output=True, text=True)
    assert said.returncode == 2 and "visible to every account" in " ".join(said.stderr.split())
    assert "Traceback" not in said.stderr
    # from the environment or a file it is taken (and this server is not there)
    env = subprocess.run(args, capture_output=True, text=True, env={**os.environ,
                                                                    "KRAFT_DB": url})
    assert env.returncode == 2 and "Connection refused" in env.stderr, env.stderr
    f = tmp_path / "db-url"
    f.write_text(url + "\n")
    f.chmod(0o600)
    file = subprocess.run([*args, "--db-file", str(f)], capture_output=True, text=True)
    assert file.returncode == 2 and "Connection refused" in file.stderr, file.stderr
    assert not re.search("s3cret", said.stderr + env.stderr + file.stderr)


def test_a_process_the_job_starts_after_the_stop_gets_sigterm_too(tmp_path):
    """The stop must reach processes that did not exist yet when it came (a job still setting
    up, or a sandbox not yet up, when it is cancelled): otherwise they run on until the grace
    period ends. Here the job ignores SIGTERM for its first 0.5 s, then starts a worker."""
    job = ("import os, signal, subprocess, time\n"
           "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(0.5)\n"
           "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
           "subprocess.run(['sleep', '600'])\n")
    exit_file = tmp_path / "exit"
    runner = subprocess.Popen([sys.executable, "-m", "kraft.exec.runner", "--job-id", "1",
                               "--attempt", "1", "--exit-file", str(exit_file), "--grace-s",
                               "10", "--", sys.executable, "-c", job])
    time.sleep(0.3)  # the runner is up, the job ignores SIGTERM, its worker is not there yet
    t0 = time.time()
    runner.send_signal(15)
    runner.wait(timeout=20)
    assert time.time() - t0 < 3, "a process started after the stop ran on to the grace's end"
    assert exit_file.exists()


def test_a_runner_just_started_is_alive(tmp_path):
    """Popen returns once the child is past exec, a moment before the kernel sets its new
    command line: a status taken then read an empty one and judged the rank vanished (with
    other threads in the process, as a service has, about 1 start in 10 here)."""
    import asyncio
    import threading

    for _ in range(2):  # idle event loops in other threads, as in the API process
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
    ex = LocalExecutor(tmp_path / "runs")
    judged_gone = 0
    for i in range(1, 61):
        req = RunRequest(i, 1, ("sleep", "0.3"), (Rank("a", (0,)),))
        judged_gone += not ex.status(req, ex.start(req)).running
    assert judged_gone == 0, f"{judged_gone} of 60 ranks judged gone right after their start"
