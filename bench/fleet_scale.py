"""The live service at fleet scale: the loop on stargate-norway (100,008 GPUs) with the
executor that runs nothing. Recorded in bench/results/fleet-scale-<db>.json.

    python bench/fleet_scale.py [--db postgresql://postgres@127.0.0.1:5432/postgres]

2,000 tenants, each with a quota of 20 GPUs, submit 10 one-node jobs (4 GPUs, an hour) each:
10,000 run, 10,000 wait on their quotas. Then, on the wall clock:
- fill: the steps until the 10,000 run: sustained starts per second;
- idle at scale: steps with 10,000 running and 10,000 waiting, nothing changing (p50/p99);
- arrivals: a tenant without a quota submits 500 jobs a second for 10 s (one node, 5 s
  each, so they end while others arrive), written to the database as the API's intake
  does: submit-to-running latency (p50/p99) with free capacity, and the steps meanwhile;
- recovery: a new loop on the same database and engine (as after a SIGKILL) re-adopts the
  10,000 running jobs: the time from start to its first step done;
- memory: the process's peak RSS.
Targets (issue #16): step p99 < 100 ms, >= 1,000 starts/s, submit-to-running p99 < 1 s,
recovery < 10 s, memory < 2 GB. Submissions skip HTTP here: bench/control.py measures the API.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

RESULTS = Path(__file__).parent / "results"
TENANTS, PER_TENANT, QUOTA_GPUS = 2000, 10, 20


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None)
    ap.add_argument("--rate", type=float, default=500.0, help="arrivals per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--parts", action="store_true",
                    help="also print where the idle steps' time goes, by part of the step")
    a = ap.parse_args()

    from control import drop_pg, fresh_pg  # bench/control.py: scratch databases

    from kraft.control.service import ControlPlane, Garbage
    from kraft.control.store import JobRow, TenantRow, make_engine, migrate, sessions
    from kraft.exec.null import NullExecutor
    from kraft.spec.load import load_fleet
    from kraft.spec.models import JobSpec, TenantSpec

    url = fresh_pg(a.db) if a.db else f"sqlite:///{tempfile.mkdtemp()}/kraft.db"
    engine = make_engine(url)
    migrate(engine)
    Session = sessions(engine)
    names = [f"t{k:04d}" for k in range(TENANTS)]
    with Session() as s:
        s.execute(insert(TenantRow.__table__), [
            dict(name=n, spec=TenantSpec(name=n, quota_gpus=QUOTA_GPUS).model_dump(mode="json"))
            for n in [*names]] + [dict(name="free", spec=TenantSpec(name="free").model_dump(
                mode="json"))])
        s.commit()
    fleet = load_fleet("stargate-norway")
    executor = NullExecutor()
    plane = ControlPlane(fleet, engine, executor)
    plane.recover(time.time())
    garbage = Garbage()

    def submit(tenant: str, n: int, seconds: int) -> None:
        spec = JobSpec(tenant=tenant, gpus=4, command=["sleep", str(seconds)]).model_dump(
            mode="json")
        with Session() as s:
            s.execute(insert(JobRow.__table__), [
                dict(tenant=tenant, name=f"{tenant}-{k}", state="pending", spec=spec,
                     submitted_s=time.time()) for k in range(n)])
            s.commit()


    def step() -> float:  # as kraft serve's loop runs it, its garbage collection included
        t0 = time.perf_counter()
        plane.step()
        if garbage is not None:
            garbage.after_step()
        return time.perf_counter() - t0

    # fill
    with Session() as s:
        rows = [dict(tenant=n, name=f"{n}-{k}", state="pending",
                     spec=JobSpec(tenant=n, gpus=4, command=["sleep", "3600"]).model_dump(
                         mode="json"), submitted_s=time.time())
                for n in names for k in range(PER_TENANT)]
        s.execute(insert(JobRow.__table__), rows)
        s.commit()
    t0 = time.perf_counter()
    fill_steps = []
    while len(plane.runs) < TENANTS * QUOTA_GPUS // 4:
        fill_steps.append(step())
    fill_s = time.perf_counter() - t0
    running, waiting = len(plane.runs), plane.sched.n_waiting
    print(f"fill: {running:,} running, {waiting:,} waiting after {fill_s:.1f} s "
          f"({running / fill_s:,.0f} starts/s, {len(fill_steps)} steps)", flush=True)
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:  # as autovacuum would on a running service
            c.exec_driver_sql("ANALYZE")
            c.commit()
    parts: dict[str, list[float]] = {}
    if a.parts:  # time each part of the step
        import functools

        for name in ("_poll", "_ingest", "_cancels", "_reap", "_nodes", "_requests",
                     "_launch_waiting", "_apply", "_reasons", "_queues", "_write_queues",
                     "_tenant_updates", "_engine_nodes"):
            def timed(fn, name=name):
                @functools.wraps(fn)
                def run(*args, **kw):
                    t = time.perf_counter()
                    try:
                        return fn(*args, **kw)
                    finally:
                        parts.setdefault(name, []).append(time.perf_counter() - t)
                return run
            setattr(plane, name, timed(getattr(plane, name)))
        import gc

        gc_started = []

        def gc_timer(phase, info):
            if phase == "start":
                gc_started.append(time.perf_counter())
            elif gc_started:
                parts.setdefault(f"gc gen{info['generation']}", []).append(
                    time.perf_counter() - gc_started.pop())
        gc.callbacks.append(gc_timer)
        import kraft.control.service as service

        snap = service.snapshot
        service.snapshot = lambda *args: (lambda t: (_r := snap(*args), parts.setdefault(
            "queue snapshot", []).append(time.perf_counter() - t))[0])(time.perf_counter())
        cycle = plane.sched.cycle
        plane.sched.cycle = lambda now: (lambda t: (_r := cycle(now), parts.setdefault(
            "sched.cycle", []).append(time.perf_counter() - t))[0])(time.perf_counter())
    def show_parts() -> None:
        for name, ts in sorted(parts.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {name:16} calls {len(ts):4}  max {max(ts) * 1e3:7.1f} ms  "
                  f"median {statistics.median(ts) * 1e3:6.1f} ms  "
                  f"total {sum(ts) * 1e3:7.0f} ms")
        parts.clear()

    idle = [step() for _ in range(50)]
    show_parts()
    print(f"idle at scale: step p50 {pct(idle, .5) * 1e3:.1f} ms, "
          f"p99 {pct(idle, .99) * 1e3:.1f} ms", flush=True)

    # arrivals with free capacity
    arrivals, started_at = [], time.time()
    submitted, lat, seen = 0, [], set(plane.runs)

    def running_now() -> None:
        """Submit-to-running: from the submit's commit to the step's end, when the start is
        on record (the step's commits are done)."""
        done_s = time.time()
        for job_id in plane.runs.keys() - seen:
            seen.add(job_id)
            lat.append(done_s - plane.jobs[job_id].submit_s)

    while time.time() - started_at < a.seconds:
        due = int((time.time() - started_at) * a.rate) - submitted
        if due > 0:
            submit("free", due, 5)
            submitted += due
        arrivals.append(step())
        running_now()
    deadline = time.time() + 30
    while len(lat) < submitted and time.time() < deadline:  # the last arrivals start
        arrivals.append(step())
        running_now()
    show_parts()
    print(f"arrivals: {submitted:,} at {a.rate:.0f}/s, submit to running p50 "
          f"{pct(lat, .5) * 1e3:.0f} ms, p99 {pct(lat, .99) * 1e3:.0f} ms; steps p50 "
          f"{pct(arrivals, .5) * 1e3:.1f} ms, p99 {pct(arrivals, .99) * 1e3:.1f} ms", flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # recovery: a new loop on the same database and engine, as after a SIGKILL
    adopted_before = len(plane.runs)
    t0 = time.perf_counter()
    again = ControlPlane(fleet, engine, executor)
    again.recover(time.time())
    again.step()
    recovery_s = time.perf_counter() - t0
    print(f"recovery: {len(again.runs):,} running re-adopted (of {adopted_before:,}), "
          f"first step done after {recovery_s:.2f} s; peak RSS {rss_mb:,.0f} MB", flush=True)

    out = {"db": engine.dialect.name, "fleet": f"stargate-norway ({fleet_gpus(fleet):,} GPUs)",
           "tenants": TENANTS + 1, "running": running, "waiting": waiting,
           "fill_starts_per_s": round(running / fill_s), "fill_s": round(fill_s, 2),
           "idle_step_ms": {"p50": round(pct(idle, .5) * 1e3, 2),
                            "p99": round(pct(idle, .99) * 1e3, 2)},
           "arrivals": {"rate_per_s": a.rate, "submitted": submitted,
                        "submit_to_running_ms": {"p50": round(pct(lat, .5) * 1e3),
                                                 "p99": round(pct(lat, .99) * 1e3)},
                        "step_ms": {"p50": round(pct(arrivals, .5) * 1e3, 2),
                                    "p99": round(pct(arrivals, .99) * 1e3, 2)}},
           "recovery_s": round(recovery_s, 2), "readopted": len(again.runs),
           "peak_rss_mb": round(rss_mb),
           "targets": {"step_p99_ms": 100, "starts_per_s": 1000,
                       "submit_to_running_p99_ms": 1000, "recovery_s": 10, "rss_mb": 2048},
           "machine": "2 cores; the loop, the database and this driver share them",
           "python": sys.version.split()[0], "at": time.strftime("%Y-%m-%d")}
    out["step_ms_mean_idle"] = round(statistics.mean(idle) * 1e3, 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"fleet-scale-{engine.dialect.name}.json").write_text(
        json.dumps(out, indent=2) + "\n")
    engine.dispose()
    if a.db:
        drop_pg(a.db, url)


def fleet_gpus(fleet) -> int:
    from kraft.cluster.state import ClusterState

    return ClusterState(fleet).total_gpus


if __name__ == "__main__":
    main()
