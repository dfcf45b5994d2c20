"""A live run on nordic-federation (five sites whose pods share names) with jobs at every site:
the placements, /metrics, the dashboard and the usage by site agree site by site, and every
rank sees its own GPUs."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from kraft.control.api import create_app
from kraft.control.auth import ensure_operator_token
from kraft.control.service import ControlPlane
from kraft.control.store import make_engine, migrate
from kraft.exec.local import LocalExecutor
from kraft.spec.load import load_fleet

SITES = ("narvik", "kristiansand", "stockholm", "frankfurt", "virginia")
SHOW = ["bash", "-c", "echo rank=$RANK node=$KRAFT_NODE gpus=$CUDA_VISIBLE_DEVICES; sleep 30"]


@pytest.fixture
def federation(db_url, tmp_path):
    engine = make_engine(db_url)
    migrate(engine)
    home = tmp_path / "home"
    op = ensure_operator_token(home)
    plane = ControlPlane(load_fleet("nordic-federation"), engine, LocalExecutor(home / "runs"),
                         grace_s=1)
    with TestClient(create_app(engine, home, plane, tick_s=0.02)) as client:
        client.operator = {"Authorization": f"Bearer {op}"}
        yield client
    engine.dispose()


def test_every_site_books_its_own_jobs(federation):
    c = federation
    auth, ids = {}, {}
    for site in SITES:  # one tenant per site (residency), a one-node and a two-node job each
        r = c.post("/admin/tenants", json={"name": f"t-{site}",
                                           "residency": {"sites": [site]}}, headers=c.operator)
        assert r.status_code == 201, r.text
        auth[site] = {"Authorization": f"Bearer {r.json()['token']}"}
        ids[site] = [c.post("/v1/jobs", json={"gpus": gpus, "command": SHOW},
                            headers=auth[site]).json()["id"] for gpus in (3, 16)]
    jobs = {}
    deadline = time.time() + 60
    for site in SITES:
        for job_id in ids[site]:
            while True:
                job = c.get(f"/v1/jobs/{job_id}", headers=auth[site]).json()
                logs = c.get(f"/v1/jobs/{job_id}/logs", headers=auth[site]).text
                if job["state"] == "running" and logs.count("rank=") == len(job["placement"]):
                    break
                assert time.time() < deadline, (job, logs)
                time.sleep(0.1)
            jobs[job_id] = (job, logs)
    for site in SITES:
        for job_id in ids[site]:
            job, logs = jobs[job_id]
            assert all(r["node"].startswith(f"{site}/pod-") for r in job["placement"]), job
            ranks = re.findall(r"rank=(\d+) node=(\S+) gpus=(\S*)", logs)
            assert len(ranks) == len(job["placement"])
            for rank, node, gpus in ranks:  # each rank: the node Kraft chose, its own GPUs
                placed = job["placement"][int(rank)]
                assert node == placed["node"]
                assert gpus == ",".join(map(str, placed["gpus"])), (site, logs)
    metrics = c.get("/metrics", headers=c.operator).text
    dashboard = {s["site"]: s for s in c.get("/admin/dashboard", headers=c.operator)
                 .json()["sites"]}
    usage = {r["site"]: r for r in c.get("/admin/usage", params={"by": "site"},
                                         headers=c.operator).json()["rows"]}
    for site in SITES:
        allocated = float(re.search(rf'kraft_gpus_allocated{{site="{site}"}} (\S+)',
                                    metrics).group(1))
        assert allocated == 19, (site, metrics)  # 3 + 16, at this site and no other
        assert dashboard[site]["allocated"] == 19
        assert sum(p["allocated"] for p in dashboard[site]["pods"]) == 19
        assert usage[site]["gpu_hours"] > 0, usage
    assert set(usage) == set(SITES)
    for site in SITES:
        for job_id in ids[site]:
            c.post(f"/v1/jobs/{job_id}/cancel", headers=auth[site])
