"""`kraft serve` itself at fleet scale: stargate-norway (100,008 GPUs) on PostgreSQL with the
executor that runs nothing (`executor: {kind: "null"}`), driven over HTTP by concurrent
clients. Recorded in bench/results/serve-scale-postgresql.json.

    python bench/serve_scale.py [--db postgresql://postgres@127.0.0.1:5432/postgres]

2,000 tenants, each with a quota of 20 GPUs, submit 10 one-node jobs (4 GPUs, an hour):
10,000 run, 10,000 wait on their quotas. Then:
- fill: the loop's starts per second while the 10,000 start (from the jobs' start times);
- idle at scale: the loop's step time with nothing changing, from its own histogram
  (`kraft_loop_step_seconds` at /metrics: p50/p99 are bucket upper bounds);
- arrivals: a tenant without a quota submits 500 jobs a second for 10 s from concurrent
  clients (4 GPUs, 5 s each, so they end while others arrive): submit-to-running latency
  with free capacity (the client's send time to the start time on record; one clock), and
  the step time meanwhile;
- memory: peak RSS of the API and loop processes;
- recovery: SIGKILL of `kraft serve`, started again on the same database: the time until a
  loop step is done with the 10,000 running jobs re-adopted (attempt 1 still, none requeued).
Targets (issue #16): step p99 < 100 ms, >= 1,000 starts/s, submit-to-running p99 < 1 s,
recovery < 10 s, memory < 2 GB. bench/fleet_scale.py runs the same loop in-process and
times each part of its step (`--parts`), to profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from control import KRAFT, drop_pg, free_port, fresh_pg, wait_up
from fleet_scale import PER_TENANT, QUOTA_GPUS, TENANTS, pct  # the same load
from sqlalchemy import func, select

RESULTS = Path(__file__).parent / "results"


def step_buckets(base: str, operator: str) -> dict[float, float]:
    """The loop's step histogram, cumulative count per upper bound (s)."""
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {operator}"},
                     timeout=30).text
    return {float(le): float(n) for le, n in re.findall(
        r'^kraft_loop_step_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)}


def step_quantiles(before: dict, after: dict) -> dict:
    """p50/p99 of the steps between two scrapes: the upper bound of the bucket holding them,
    as Prometheus's histogram_quantile would bound it."""
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    steps = delta[float("inf")]
    out = {"steps": int(steps)}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        out[name] = next((round(le * 1e3) for le, n in delta.items() if n >= q * steps), None)
    return out


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            pids += process_tree(int(child))
    return pids


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    return total / 1024


async def submit(base: str, bodies: list[tuple[str, dict]], clients: int,
                 rate: float | None = None) -> list[tuple[int, float]]:
    """POST each (token, body) from `clients` concurrent connections, at `rate` per second
    when given; returns (job id, wall time sent) per job."""
    import aiohttp

    sent: list[tuple[int, float]] = []
    gate = asyncio.Semaphore(clients)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=clients)) as c:
        async def one(k: int, token: str, body: dict) -> None:
            if rate:
                await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            async with gate:
                at = time.time()
                async with c.post("/v1/jobs", json=body,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
                    text = await r.text()
                assert r.status == 201, text
                sent.append((json.loads(text)["id"], at))

        await asyncio.gather(*(one(k, t, b) for k, (t, b) in enumerate(bodies)))
    return sent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rate", type=float, default=500.0, help="arrivals per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    a = ap.parse_args()

    import uvloop

    from kraft.control.api import add_tenant
    from kraft.control.auth import ensure_operator_token
    from kraft.control.store import JobRow, make_engine, migrate, sessions
    from kraft.spec.load import load_fleet
    from kraft.spec.models import TenantSpec

    home = Path(tempfile.mkdtemp(prefix="kraft-serve-scale-"))
    url = fresh_pg(a.db)
    fleet = load_fleet("stargate-norway").model_dump(mode="json", by_alias=True)
    for site in fleet["sites"]:
        site["executor"] = {"kind": "null"}
    (home / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    engine = make_engine(url)
    migrate(engine)
    Session = sessions(engine)
    names = [f"t{k:04d}" for k in range(TENANTS)]
    with Session() as s:
        tokens = {n: add_tenant(s, TenantSpec(name=n, quota_gpus=QUOTA_GPUS)).token
                  for n in names}
        tokens["free"] = add_tenant(s, TenantSpec(name="free")).token
        s.commit()
    operator = ensure_operator_token(home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(home / "serve.log", "ab")
    serve_cmd = [*KRAFT, "serve", "--data-dir", str(home), "--port", str(port), "--db", url,
                 "--fleet", str(home / "fleet.yaml"), "--single-user"]

    def running(tenant_not: str = "free") -> int:
        with Session() as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.state == "running", JobRow.tenant != tenant_not))

    server = subprocess.Popen(serve_cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(base, "/openapi.json")
        bodies = [(tokens[n], {"gpus": 4, "command": ["sleep", "3600"]})
                  for _ in range(PER_TENANT) for n in names]
        t0 = time.perf_counter()
        uvloop.run(submit(base, bodies, a.clients))
        intake_s = time.perf_counter() - t0
        while running() < TENANTS * QUOTA_GPUS // 4 and time.perf_counter() - t0 < 300:
            time.sleep(0.5)
        with Session() as s:
            starts = sorted(s.scalars(select(JobRow.started_at).where(
                JobRow.state == "running")))
        fill_rate = len(starts) / max((starts[-1] - starts[0]).total_seconds(), 1e-9)
        print(f"fill: {len(bodies):,} submitted over HTTP in {intake_s:.1f} s "
              f"({len(bodies) / intake_s:,.0f}/s); {len(starts):,} started at "
              f"{fill_rate:,.0f}/s (target >= 1,000)", flush=True)

        time.sleep(2)  # the last starts' writes settle
        before = step_buckets(base, operator)
        time.sleep(10)
        idle = step_quantiles(before, step_buckets(base, operator))
        print(f"idle at scale (10,000 running, 10,000 waiting): {idle['steps']} steps, "
              f"p50 <= {idle['p50_ms']} ms, p99 <= {idle['p99_ms']} ms (target p99 < 100)",
              flush=True)

        before = step_buckets(base, operator)
        n = int(a.rate * a.seconds)
        sent = uvloop.run(submit(base, [(tokens["free"], {"gpus": 4, "command": ["sleep", "5"]})
                                        ] * n, a.clients, a.rate))
        with Session() as s:  # until every arrival has started
            while s.scalar(select(func.count()).select_from(JobRow).where(
                    JobRow.tenant == "free", JobRow.started_at.is_(None))):
                time.sleep(0.2)
                s.rollback()
            started = dict(s.execute(select(JobRow.id, JobRow.started_at).where(
                JobRow.tenant == "free")).all())
        busy = step_quantiles(before, step_buckets(base, operator))
        latency = [started[job].timestamp() - at for job, at in sent]
        p50, p99 = pct(latency, 0.5) * 1e3, pct(latency, 0.99) * 1e3
        print(f"arrivals: {n:,} at {a.rate:,.0f}/s from {a.clients} clients: submit to "
              f"running p50 {p50:.0f} ms, p99 {p99:.0f} ms (target p99 < 1,000); steps "
              f"meanwhile p50 <= {busy['p50_ms']} ms, p99 <= {busy['p99_ms']} ms", flush=True)

        pids = process_tree(server.pid)
        rss_mb = peak_rss_mb(pids)
        print(f"memory: peak RSS {rss_mb:,.0f} MB over {len(pids)} processes (API and loop; "
              f"target < 2,048)", flush=True)

        time.sleep(6)  # the arrivals' 5 s jobs end: what is left running is the 10,000
        server.send_signal(signal.SIGKILL)
        server.wait()
        for pid in pids[1:]:  # the loop dies with its parent (PR_SET_PDEATHSIG)
            while Path(f"/proc/{pid}").exists() and "zombie" not in Path(
                    f"/proc/{pid}/status").read_text():
                time.sleep(0.01)
        t0 = time.perf_counter()
        server = subprocess.Popen(serve_cmd, stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                if step_buckets(base, operator).get(float("inf"), 0) > 0:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        recovery_s = time.perf_counter() - t0
        with Session() as s:
            readopted = s.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.state == "running", JobRow.attempt == 1, JobRow.tenant != "free"))
        print(f"recovery: SIGKILL, then serving with a step done in {recovery_s:.2f} s; "
              f"{readopted:,} running jobs re-adopted at attempt 1 (target < 10 s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        engine.dispose()
        drop_pg(a.db, url)

    targets = {"step_p99_ms": 100, "starts_per_s": 1000, "submit_to_running_p99_ms": 1000,
               "recovery_s": 10, "rss_mb": 2048}
    out = {"db": "postgresql", "fleet": "stargate-norway (100,008 GPUs)", "via": "kraft serve, "
           "HTTP clients (aiohttp)", "tenants": TENANTS + 1, "running": TENANTS * 5,
           "waiting": TENANTS * 5, "intake_per_s": round(len(bodies) / intake_s),
           "starts_per_s": round(fill_rate), "idle_step": idle, "arrivals_per_s": a.rate,
           "arrival_clients": a.clients, "submit_to_running_p50_ms": round(p50),
           "submit_to_running_p99_ms": round(p99), "step_during_arrivals": busy,
           "rss_mb": round(rss_mb), "recovery_s": round(recovery_s, 2),
           "readopted": readopted, "targets": targets,
           "step_quantiles": "upper bounds of kraft_loop_step_seconds buckets",
           "recorded": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve-scale-postgresql.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
