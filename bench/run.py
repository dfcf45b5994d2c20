"""Speed of the simulator and scheduler, printed and recorded in bench/results/.

    python bench/run.py philly [--shared-data DIR]   # full Philly at load 0.8, each policy
    python bench/run.py scale [--jobs N]          # synthetic trace on stargate-norway
    python bench/run.py cycle                     # one cycle with 10,000 waiting jobs

Each figure is printed beside its target from the core issue and the named baseline: the
published Python simulator of Alibaba's GPU cluster trace replays about 180-390 jobs/s.
Figures are wall-clock on whatever machine runs this; compare ratios, not absolutes, across
machines. Each run is its own process so that peak memory is the run's own.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

from kraft.cluster.state import ClusterState
from kraft.energy.books import inputs_for
from kraft.sched.job import Job, TenantState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler
from kraft.sim.run import simulate
from kraft.sim.traces import load_trace
from kraft.spec.load import load_fleet, load_tenants

RESULTS = Path(__file__).parent / "results"
BASELINE_JOBS_PER_S = (180, 390)  # Alibaba's published Python simulator (issue text)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(name: str, payload: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    payload["machine"] = f"{platform.machine()}, {platform.python_implementation()} " \
                         f"{platform.python_version()}"
    payload["recorded"] = time.strftime("%Y-%m-%d")
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded bench/results/{name}.json")


def one_sim(fleet: str, tenants: str, trace, policy: str, load: float, books=None) -> dict:
    t0 = time.perf_counter()
    run = simulate(load_fleet(fleet), load_tenants(tenants), trace, policy, load=load,
                   energy=books)
    wall = time.perf_counter() - t0
    n = trace.n_jobs
    return {"policy": policy, "jobs": n, "wall_s": round(wall, 2),
            "jobs_per_s": round(n / wall), "vs_baseline_390": round(n / wall / 390, 1),
            "slowdown": run.results["overall"]["slowdown"],
            "peak_waiting_jobs": run.results["peak_waiting_jobs"],
            "cycle_p50_ms": round(run.timing["p50_ms"], 4),
            "cycle_p99_ms": round(run.timing["p99_ms"], 3)}


def bench_philly(data_dir: Path) -> None:
    trace = load_trace("philly", data_dir)
    rows = []
    targets = {"fifo": 10, "backfill": 10, "fairshare": 10, "las": 30, "srtf": 30}
    for policy, target in targets.items():
        row = one_sim("philly", "philly", trace, policy, 0.8)
        row["target_s"] = target
        row["meets_target"] = row["wall_s"] < target
        rows.append(row)
        print(f"philly load 0.8 {policy:9s} {row['wall_s']:6.1f} s (target < {target} s)  "
              f"{row['jobs_per_s']:6d} jobs/s = {row['vs_baseline_390']}x the 390 jobs/s "
              f"baseline; slowdown {row['slowdown']}, peak queue {row['peak_waiting_jobs']}")
    # The books' cost: the same replays with energy, carbon, price and power accounting.
    books = inputs_for(load_fleet("philly"))
    with_books = []
    for policy in ("fifo", "backfill", "fairshare"):
        plain = next(r for r in rows if r["policy"] == policy)
        row = one_sim("philly", "philly", trace, policy, 0.8, books)
        row["overhead"] = round(row["wall_s"] / plain["wall_s"] - 1, 3)
        with_books.append(row)
        print(f"philly load 0.8 {policy:9s} with books {row['wall_s']:6.1f} s: "
              f"{row['overhead']:+.0%} against {plain['wall_s']} s without (target <= +30 %)")
    record("philly", {"trace": "philly (82,247 jobs)", "fleet": "philly (2,816 GPUs)",
                      "load": 0.8, "runs": rows, "with_energy_books": with_books,
                      "peak_rss_mb": round(peak_rss_mb())})


def bench_scale(n_jobs: int, policy: str, load: float) -> None:
    t0 = time.perf_counter()
    trace = load_trace(f"synthetic:{n_jobs}", None, seed=1)
    gen_s = time.perf_counter() - t0
    row = one_sim("stargate-norway", "stargate-norway", trace, policy, load)
    total = gen_s + row["wall_s"]
    rss = peak_rss_mb()
    print(f"stargate-norway {n_jobs:,} synthetic jobs, {policy}, load {load}: {total:.1f} s "
          f"(target < 300 s), peak memory {rss:.0f} MB (target < 4096), "
          f"{row['jobs_per_s']} jobs/s")
    record(f"scale-{n_jobs}", {"fleet": "stargate-norway (100,008 GPUs)", "load": load,
                               "trace_gen_s": round(gen_s, 2), **row,
                               "total_s": round(total, 1), "target_s": 300,
                               "peak_rss_mb": round(rss), "target_rss_mb": 4096})


def bench_cycle(waiting: int, policy: str, repeats: int) -> None:
    """A full stargate-norway with `waiting` jobs queued; each sample finishes one running
    job at random and times the cycle that follows."""
    fleet = load_fleet("stargate-norway")
    specs = load_tenants("stargate-norway")
    tenants = {t.name: TenantState(t) for t in specs.all}
    names = ["lab", "startups", "batch"]
    rng = random.Random(1)
    cluster = ClusterState(fleet)
    sched = Scheduler(cluster, tenants.values(), make_policy(policy))
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    now = 0.0
    n = 0
    while cluster.free_gpus > 0:  # fill the site
        job = Job(n, tenants[names[n % 3]], rng.choice(sizes), now, rng.uniform(3600, 86400))
        sched.submit(job, now)
        sched.cycle(now)
        n += 1
    for _ in range(waiting):
        sched.submit(Job(n, tenants[names[n % 3]], rng.choice(sizes), now,
                         rng.uniform(3600, 86400)), now)
        n += 1
    queued = sched.n_waiting
    samples = []
    for _ in range(repeats):
        now += 1.0
        victim = rng.choice(list(sched.running.values()))
        sched.finish(victim, now)
        t0 = time.perf_counter()
        sched.cycle(now)
        samples.append((time.perf_counter() - t0) * 1e3)
    p50 = statistics.median(samples)
    p99 = sorted(samples)[int(0.99 * len(samples))]
    print(f"cycle, stargate-norway, {queued} waiting, {policy}: median {p50:.3f} ms "
          f"(target < 50 ms), p99 {p99:.3f} ms over {repeats} cycles")
    record(f"cycle-{policy}", {"fleet": "stargate-norway (100,008 GPUs)",
                               "waiting_jobs": queued, "policy": policy,
                               "median_ms": round(p50, 4), "p99_ms": round(p99, 3),
                               "target_median_ms": 50, "cycles": repeats})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["philly", "scale", "cycle"])
    ap.add_argument("--shared-data", type=Path, default=Path("..") / "shared" / "data")
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--policy", default="backfill")
    ap.add_argument("--load", type=float, default=None,
                    help="default: 0.8 for philly, 1.0 for scale (a 100,000-GPU site barely "
                         "queues at 0.8)")
    ap.add_argument("--waiting", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args()
    if a.what == "philly":
        if not (a.data_dir / "traces/philly/philly.csv").exists():
            sys.exit(f"bench philly needs the shared data: --shared-data DIR "
                     f"(tried {a.data_dir})")
        bench_philly(a.data_dir)
    elif a.what == "scale":
        bench_scale(a.jobs, a.policy, 1.0 if a.load is None else a.load)
    else:
        bench_cycle(a.waiting, a.policy, a.repeats)


if __name__ == "__main__":
    main()
