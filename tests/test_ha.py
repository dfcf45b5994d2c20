"""Several `kraft serve` on one database (issue #17, first part): on PostgreSQL exactly one
runs the scheduling loop and the others stand by, taking over when it dies; on SQLite a
second instance on the same file is refused."""

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_recovery import KRAFT, free_port, kraft, start_server


def serve(home: Path, port: int, db: str | None = None) -> subprocess.Popen:
    return start_server(home, port, db, log=home.parent / f"{home.name}.log")


def log_of(home: Path) -> str:
    return (home.parent / f"{home.name}.log").read_text()


def until(test, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := test()):
            return value
        time.sleep(0.05)
    raise AssertionError(what)


def test_a_second_instance_on_the_same_sqlite_folder_is_refused(tmp_path):
    home = tmp_path / "home"
    first = serve(home, port := free_port())
    try:
        metrics = sorted((home / "prometheus").iterdir())
        second = subprocess.run([*KRAFT, "serve", "--data-dir", str(home), "--port",
                                 str(free_port())], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        said = " ".join(second.stderr.split())
        assert f"in use by another kraft serve (pid {first.pid})" in said, said
        assert "PostgreSQL" in said
        # refused before it touched anything: the first one's metrics files are still there
        assert sorted((home / "prometheus").iterdir()) == metrics
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        first.terminate()
        first.wait(timeout=30)
    again = serve(home, free_port())  # the lock went with its holder
    again.terminate()
    again.wait(timeout=30)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_instances_on_one_postgresql_run_each_job_once_and_fail_over(db_url, tmp_path):
    """12 jobs submitted alternately to two instances: each runs exactly once, by the one
    loop (the other said it stands by). SIGKILL of the leader: the standby takes over and
    runs new work within 10 s."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    token = re.search(r"kt_[A-Za-z0-9_-]+", kraft("admin", "tenant", "create", "acme",
                                                   "--data-dir", str(a_home), "--db",
                                                   db_url).stdout).group(0)
    a = serve(a_home, a_port := free_port(), db_url)
    until(lambda: "leader:" in log_of(a_home), 30, "the first instance did not lead")
    b = serve(b_home, b_port := free_port(), db_url)
    try:
        until(lambda: "standby:" in log_of(b_home), 30, "the second did not stand by")
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
                   for port in (a_port, b_port)]
        body = {"gpus": 1, "command": ["bash", "-c", "echo $KRAFT_JOB_ID >> $HOME/marks"]}
        ids = [clients[k % 2].post("/v1/jobs", json=body).json()["id"] for k in range(12)]
        until(lambda: all(clients[1].get(f"/v1/jobs/{i}").json()["state"] == "succeeded"
                          for i in ids), 60, "the 12 jobs did not all succeed")
        marks = (a_home / "homes" / "acme" / "marks").read_text().split()
        assert sorted(map(int, marks)) == sorted(ids)  # each once, all by the leader
        assert not (b_home / "homes" / "acme" / "marks").exists()

        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        t0 = time.time()
        job = clients[1].post("/v1/jobs", json=body).json()["id"]
        until(lambda: clients[1].get(f"/v1/jobs/{job}").json()["state"] == "succeeded", 10,
              "the standby did not take over within 10 s")
        print(f"failover: SIGKILL of the leader to a new job done on the standby in "
              f"{time.time() - t0:.2f} s")
        assert "leader:" in log_of(b_home)
        assert (b_home / "homes" / "acme" / "marks").read_text().split() == [str(job)]
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
