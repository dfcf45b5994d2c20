"""The Slurm executor against a real two-node Slurm cluster with logical GPUs
(scripts/engines/slurm-up.sh). `.ci/run` starts the cluster and sets SLURM_CONF; without it the
fixture starts one itself when Slurm is installed, and otherwise skips loudly (fails in CI)."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_recovery import free_port, kraft, start_server, wait

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    started = None
    if not os.environ.get("SLURM_CONF"):
        if not shutil.which("slurmctld"):
            if os.environ.get("CI"):
                pytest.fail("Slurm is required in CI: .ci/run installs and starts it")
            pytest.skip("SKIPPED: Slurm is not installed (apt-get install slurm-wlm munge; "
                        ".ci/run does it)")
        started = tmp_path_factory.mktemp("slurm")
        up = subprocess.run(["bash", str(ROOT / "scripts/engines/slurm-up.sh"), str(started)],
                            capture_output=True, text=True)
        if up.returncode != 0:  # e.g. another cluster holds ports 6917-6919
            subprocess.run(["bash", str(ROOT / "scripts/engines/slurm-down.sh"), str(started)])
            pytest.fail(f"scripts/engines/slurm-up.sh failed: {up.stdout}{up.stderr}")
        os.environ["SLURM_CONF"] = str(started / "slurm.conf")
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("idle") + out.stdout.count("mix") >= 2, \
        f"Slurm is not up: {out.stdout} {out.stderr}"
    yield
    if started:
        subprocess.run(["bash", str(ROOT / "scripts/engines/slurm-down.sh"), str(started)])
        del os.environ["SLURM_CONF"]


def kraft_jobs_in_slurm() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith("kraft-")]


@pytest.fixture
def serve(slurm, tmp_path):
    home = tmp_path / "home"
    servers = []
    tokens = {}

    def tenant(name, *opts):
        out = kraft("admin", "tenant", "create", name, "--data-dir", str(home), *opts).stdout
        tokens[name] = re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                            headers={"Authorization": f"Bearer {tokens[name]}"})

    port = free_port()

    def server():
        servers.append(start_server(home, port, None, fleet="slurm-local"))
        return servers[-1]

    yield tenant, server, tmp_path
    for p in servers:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
    subprocess.run(["scancel", "--name", ",".join(kraft_jobs_in_slurm()) or "none"])


def test_gang_runs_on_slurm_with_distinct_gpus(serve):
    tenant, server, _ = serve
    a = tenant("acme")
    server()
    show = ["bash", "-c", "echo rank=$RANK node=$SLURMD_NODENAME gpus=$CUDA_VISIBLE_DEVICES"]
    four = a.post("/v1/jobs", json={"gpus": 4, "command": show}).json()["id"]
    eight = a.post("/v1/jobs", json={"gpus": 8, "command": show}).json()["id"]
    for job_id in (four, eight):
        job = wait(a, job_id, {"succeeded", "failed"})
        assert job["state"] == "succeeded", job
    out = a.get(f"/v1/jobs/{four}/logs").text
    gpus = re.search(r"gpus=(\S+)", out).group(1).split(",")
    assert len(set(gpus)) == 4, out
    ranks = sorted(re.findall(r"rank=(\d) node=(\w+) gpus=(\S+)", a.get(f"/v1/jobs/{eight}/logs").text))
    assert [r for r, _, _ in ranks] == ["0", "1"]  # one rank per node, where Kraft put it
    assert sorted(n for _, n, _ in ranks) == ["node1", "node2"]
    assert all(len(set(g.split(","))) == 4 for _, _, g in ranks)


def test_cancel_frees_the_gpus_on_slurm(serve):
    tenant, server, _ = serve
    a = tenant("acme")
    server()
    job_id = a.post("/v1/jobs", json={"gpus": 8, "command": ["sleep", "300"]}).json()["id"]
    wait(a, job_id, {"running"})
    deadline = time.time() + 20
    while len(kraft_jobs_in_slurm()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert len(kraft_jobs_in_slurm()) == 2
    a.post(f"/v1/jobs/{job_id}/cancel")
    wait(a, job_id, {"cancelled"})
    while kraft_jobs_in_slurm() and time.time() < deadline:
        time.sleep(0.1)
    assert kraft_jobs_in_slurm() == [], "scancel did not free the GPUs"
    # all 8 GPUs are Slurm's to give again
    again = a.post("/v1/jobs", json={"gpus": 8, "command": ["true"]}).json()["id"]
    assert wait(a, again, {"succeeded", "failed"})["state"] == "succeeded"


def test_reserved_arrival_preempts_spot_on_slurm(serve, tmp_path):
    tenant, server, _ = serve
    spot = tenant("cheap", "--tier", "spot")
    lab = tenant("lab", "--tier", "reserved", "--reserved-gpus", "4")
    server()
    mark = tmp_path / "spot-starts"
    spot_id = spot.post("/v1/jobs", json={"gpus": 8, "command": [
        "bash", "-c", f"echo $RANK >> {mark}; sleep 3"]}).json()["id"]
    wait(spot, spot_id, {"running"})
    lab_id = lab.post("/v1/jobs", json={"gpus": 4, "command": ["sleep", "1"]}).json()["id"]
    assert wait(lab, lab_id, {"succeeded", "failed"})["state"] == "succeeded"
    done = wait(spot, spot_id, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "succeeded" and done["attempt"] == 2
    states = [e["to_state"] for e in spot.get(f"/v1/jobs/{spot_id}/events").json()]
    assert states.count("preempted") == 1 and states[-1] == "succeeded"


def test_sigkill_of_the_control_plane_keeps_slurm_jobs_once(serve, tmp_path):
    tenant, server, _ = serve
    a = tenant("acme")
    first = server()
    mark = tmp_path / "starts"
    job_id = a.post("/v1/jobs", json={"gpus": 8, "command": [
        "bash", "-c", f"echo start-$RANK >> {mark}; sleep 4"]}).json()["id"]
    wait(a, job_id, {"running"})
    deadline = time.time() + 20
    while len(mark.read_text().split() if mark.exists() else []) < 2 and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    server()
    done = wait(a, job_id, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "succeeded" and done["attempt"] == 1
    assert sorted(mark.read_text().split()) == ["start-0", "start-1"], "ran twice"
    details = [e["detail"] for e in a.get(f"/v1/jobs/{job_id}/events").json()]
    assert any("re-adopted" in d for d in details)
