"""Several `kraft serve` on one PostgreSQL (issue #17), recorded in bench/results/ha.json.

    python bench/ha.py [--db postgresql://postgres@127.0.0.1:5432/postgres]

Two instances on one database (the fleet's executor runs nothing: 16 nodes x 8 GPUs, jobs
of one GPU and one second), a fresh database for each figure:
- submissions/s from the same load generator (bench/control.py's, aiohttp on uvloop) sent
  to one API process, then spread over two; the ratio is the figure. On a machine with few
  cores the two API processes, the loop, PostgreSQL and the clients share them: the ratio
  says what a second process buys here, not on a site's hosts;
- failover: SIGKILL of the leader, three times (started again each time as a standby): the
  seconds to the first job started under the new lease (its epoch on the attempt), with
  work waiting. The floor is the lease (kraft.control.leader.LEASE_S).
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
import uvloop
from control import KRAFT, drop_pg, free_port, fresh_pg, submit_all, wait_up
from sqlalchemy import create_engine, text

RESULTS = Path(__file__).parent / "results"
FLEET = """name: ha-bench
sites:
  - name: site
    country: "NO"
    jurisdiction: EEA
    grid_zone: NO-NO1
    it_power_budget_mw: 2
    executor: {kind: "null"}
    pods: [{name: pod, nodes: [{count: 16, gpus: 8, model: H100-SXM}]}]
"""


class Pair:
    """Two instances on one fresh database."""

    def __init__(self, admin_url: str, home: Path):
        self.admin_url, self.home = admin_url, home
        self.url = fresh_pg(admin_url)
        self.db = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))
        (home / "fleet.yaml").write_text(FLEET)
        out = subprocess.run([*KRAFT, "admin", "tenant", "create", "bench", "--data-dir",
                              str(home / "a"), "--db", self.url], capture_output=True,
                             text=True, check=True)
        self.token = re.search(r"kt_[A-Za-z0-9_-]+", out.stdout).group(0)
        self.procs: dict[str, subprocess.Popen] = {}
        self.bases: dict[str, str] = {}
        for name in "ab":
            self.start(name)

    def start(self, name: str) -> None:
        port = free_port()
        self.bases[name] = f"http://127.0.0.1:{port}"
        self.procs[name] = subprocess.Popen(
            [*KRAFT, "serve", "--data-dir", str(self.home / name), "--port", str(port),
             "--db", self.url, "--fleet", str(self.home / "fleet.yaml"), "--runs-dir",
             str(self.home / "runs")], stdout=open(self.home / f"{name}.log", "ab"),
            stderr=subprocess.STDOUT)
        wait_up(self.bases[name], "/openapi.json")

    def leader(self, not_epoch: int | None = None, timeout: float = 30) -> tuple[str, int]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.db.connect() as c:
                row = c.execute(text("SELECT epoch, holder FROM leases WHERE name = 'loop' "
                                     "AND until > clock_timestamp()")).first()
            if row is not None and row.epoch != not_epoch:
                loop_pid = int(row.holder.rsplit(":", 1)[1])
                try:
                    parent = int(Path(f"/proc/{loop_pid}/stat").read_text()
                                 .rsplit(")", 1)[1].split()[1])
                except FileNotFoundError:
                    parent = None
                for name, proc in self.procs.items():
                    if proc.pid == parent and proc.poll() is None:
                        return name, row.epoch
            time.sleep(0.02)
        raise RuntimeError("no instance took the lease")

    def first_start(self, epoch: int) -> float | None:
        with self.db.connect() as c:
            return c.execute(text("SELECT min(start_s) FROM attempts WHERE leader_epoch = :e"),
                             {"e": epoch}).scalar()

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.db.dispose()
        drop_pg(self.admin_url, self.url)


def rate(pair: Pair, names: str, jobs: int, clients: int) -> float:
    """Submissions/s, the clients split evenly over the instances named."""
    async def spread():
        per = jobs // len(names)
        await asyncio.gather(*(submit_all(pair.bases[n], pair.token, per,
                                          clients // len(names), body=BODY) for n in names))
    t0 = time.perf_counter()
    uvloop.run(spread())
    return jobs / (time.perf_counter() - t0)


BODY = {"gpus": 1, "command": ["sleep", "1"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--jobs", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--kills", type=int, default=3)
    a = ap.parse_args()
    figures = {}
    for names in ("a", "ab"):
        pair = Pair(a.db, Path(tempfile.mkdtemp(prefix="kraft-bench-ha-")))
        try:
            pair.leader()
            figures[len(names)] = r = rate(pair, names, a.jobs, a.clients)
            print(f"{len(names)} API process(es): {a.jobs:,} submissions from {a.clients} "
                  f"clients: {r:,.0f}/s")
            if len(names) == 1:
                continue
            failovers = []
            for _ in range(a.kills):
                name, epoch = pair.leader()
                pair.procs[name].send_signal(signal.SIGKILL)
                pair.procs[name].wait(timeout=30)
                killed = time.time()
                other = next(n for n in pair.procs if n != name)
                with httpx.Client(base_url=pair.bases[other], timeout=30, headers={
                        "Authorization": f"Bearer {pair.token}"}) as c:
                    c.post("/v1/jobs", json=BODY)  # work for the new leader, whatever waits
                _, new_epoch = pair.leader(not_epoch=epoch)
                while (first := pair.first_start(new_epoch)) is None:
                    time.sleep(0.02)
                failovers.append(first - killed)
                print(f"failover: SIGKILL of the leader to the first start under the new "
                      f"lease: {failovers[-1]:.2f} s")
                pair.start(name)
        finally:
            pair.close()
    ratio = figures[2] / figures[1]
    print(f"two API processes against one: {ratio:.2f}x; failover max {max(failovers):.2f} s "
          f"(target < 10 s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ha.json").write_text(json.dumps({
        "db": "postgresql", "submissions": a.jobs, "clients": a.clients,
        "one_api_process_per_s": round(figures[1]), "two_api_processes_per_s": round(figures[2]),
        "two_against_one": round(ratio, 2),
        "failover_s": [round(f, 2) for f in failovers], "failover_target_s": 10,
        "recorded": time.strftime("%Y-%m-%d")}, indent=2) + "\n")


if __name__ == "__main__":
    main()
