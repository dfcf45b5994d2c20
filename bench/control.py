"""Speed of the live control plane, recorded in bench/results/control-<db>.json.

    python bench/control.py [--db postgresql://postgres@127.0.0.1:5432/postgres] [--jobs 10000]

Starts `kraft serve` (one uvicorn process) on a fresh state folder or database, then:
- submissions: N jobs from C concurrent clients (each submit is a full write: job, event,
  audit row, one commit); jobs ask for the whole fleet and sleep, so they queue rather than
  spawn N processes; reports submissions/s and latency p50/p99 (targets: 500/s on SQLite,
  1,000/s on PostgreSQL);
- submit-to-start on an idle fleet: after the queue is cancelled and drained, one-GPU jobs
  submitted one by one; time until the API reports them running (target p99 < 1 s).

The baseline: the same load generator against a FastAPI endpoint that does nothing
(`empty_api.py`), on the same machine, just before. This machine's speed varies by up to
~45 % from day to day; the ratio `of_empty_endpoint` does not move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results"
KRAFT = [sys.executable, "-m", "kraft.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_pg(admin_url: str) -> str:
    import psycopg

    name = f"kraft_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg(admin_url: str, url: str) -> None:
    """Drop a scratch database `fresh_pg` made."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def wait_up(base: str, path: str) -> None:
    for _ in range(100):
        try:
            httpx.get(f"{base}{path}", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)


def empty_endpoint_rate(n: int, clients: int) -> float:
    """Submissions/s the load generator gets from an endpoint that does nothing."""
    import uvloop

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir",
                               str(Path(__file__).parent), "empty_api:app", "--port",
                               str(port), "--log-level", "warning"])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base, "/openapi.json")
        t0 = time.perf_counter()
        uvloop.run(submit_all(base, "-", n, clients))
        return n / (time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(timeout=10)


async def submit_all(base: str, token: str, n: int, clients: int,
                     body: dict | None = None) -> list[float]:
    """aiohttp on uvloop as the load generator: httpx needs ~1 ms of CPU per request and caps a
    2-core machine (server and clients together) at ~750 requests/s; aiohttp reaches ~6,500/s
    against an empty FastAPI endpoint here, so the figure measures the server."""
    import aiohttp

    latencies: list[float] = []
    body = body or {"gpus": 8, "command": ["sleep", "3600"]}
    queue = iter(range(n))
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers,
                                     connector=aiohttp.TCPConnector(limit=clients)) as c:
        async def worker():
            for _ in queue:
                t0 = time.perf_counter()
                async with c.post("/v1/jobs", json=body,
                                  headers={"Idempotency-Key": uuid.uuid4().hex}) as r:
                    text = await r.text()
                latencies.append(time.perf_counter() - t0)
                assert r.status == 201, text

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="PostgreSQL admin URL (default: SQLite)")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--starts", type=int, default=50)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kraft-bench-"))
    db_args = ["--db", fresh_pg(a.db)] if a.db else []
    out = subprocess.run([*KRAFT, "admin", "tenant", "create", "bench", "--data-dir",
                          str(home), *db_args], capture_output=True, text=True, check=True)
    token = re.search(r"kt_[A-Za-z0-9_-]+", out.stdout).group(0)
    port = free_port()
    server = subprocess.Popen([*KRAFT, "serve", "--data-dir", str(home), "--port", str(port),
                               *db_args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        empty_rate = empty_endpoint_rate(a.jobs, a.clients)
        wait_up(base, "/openapi.json")
        t0 = time.perf_counter()
        import uvloop

        lat = uvloop.run(submit_all(base, token, a.jobs, a.clients))
        wall = time.perf_counter() - t0
        lat.sort()
        rate = a.jobs / wall
        p50, p99 = lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3
        kind = "postgresql" if a.db else "sqlite"
        target = 1000 if a.db else 500
        print(f"{kind}: {a.jobs:,} submissions from {a.clients} clients in {wall:.1f} s = "
              f"{rate:,.0f}/s (target {target}/s), latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
              f"an empty endpoint: {empty_rate:,.0f}/s, so {rate / empty_rate:.2f} of it")

        c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                         timeout=60)
        asked: set[int] = set()  # drain the queue (by state: a listing holds 10,000 jobs)
        while live := [j["id"] for state in ("pending", "admitted", "running")
                       for j in c.get("/v1/jobs", params={"state": state,
                                                          "limit": 10_000}).json()]:
            for job_id in set(live) - asked:
                c.post(f"/v1/jobs/{job_id}/cancel")
                asked.add(job_id)
            time.sleep(0.5)
        starts = []
        for _ in range(a.starts):
            t1 = time.perf_counter()
            job_id = c.post("/v1/jobs", json={"gpus": 1, "command": ["sleep", "0.1"]}).json()["id"]
            while c.get(f"/v1/jobs/{job_id}").json()["state"] in ("pending", "admitted"):
                time.sleep(0.005)
            starts.append(time.perf_counter() - t1)
            while c.get(f"/v1/jobs/{job_id}").json()["state"] == "running":
                time.sleep(0.01)
        starts.sort()
        s50, s99 = statistics.median(starts) * 1e3, starts[int(len(starts) * 0.99)] * 1e3
        print(f"{kind}: submit to running on an idle fleet: p50 {s50:.0f} ms, p99 {s99:.0f} ms "
              f"over {a.starts} jobs (target p99 < 1,000 ms)")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"control-{kind}.json").write_text(json.dumps({
            "db": kind, "submissions": a.jobs, "clients": a.clients,
            "submissions_per_s": round(rate), "target_per_s": target,
            "empty_endpoint_per_s": round(empty_rate),
            "of_empty_endpoint": round(rate / empty_rate, 2),
            "latency_p50_ms": round(p50, 1), "latency_p99_ms": round(p99, 1),
            "submit_to_running_p50_ms": round(s50), "submit_to_running_p99_ms": round(s99),
            "recorded": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    finally:
        server.terminate()
        server.wait(timeout=10)
        if a.db:  # drop the scratch database
            drop_pg(a.db, db_args[1])


if __name__ == "__main__":
    main()
