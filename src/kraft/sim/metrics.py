"""Results of a simulation: scheduling metrics as plain data (results.json, docs/results.md).

Everything here is a pure function of the simulated jobs and timeline, so the same seed gives
byte-identical output. The scheduler's own decision time is a measurement of this machine and
lives apart (`decision_time`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from kraft.sched.job import Job, JobState
from kraft.sim.engine import SimOutcome, Timeline

SCHEMA_VERSION = "kraft.results/1"
TIERS = ("reserved", "on-demand", "spot")


def _pct(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"mean": _r(values.mean()), "p50": _r(p50), "p95": _r(p95), "p99": _r(p99)}


def _r(x: float) -> float:
    return round(float(x), 3)


def _group(jobs: list[Job]) -> dict:
    jct = np.array([j.finish_s - j.submit_s for j in jobs])
    wait = np.array([j.first_start_s - j.submit_s for j in jobs])
    # every second not running: before the first start and requeued after each preemption
    waiting = np.array([j.finish_s - j.submit_s - j.executed_s for j in jobs])
    lb = np.array([j.duration_s for j in jobs])
    return {
        "jobs": len(jobs),
        "jct_s": _pct(jct),
        "queue_delay_s": _pct(wait),
        "waiting_total_s": _pct(np.maximum(waiting, 0.0)),
        "lower_bound_jct_mean_s": _r(lb.mean()) if lb.size else 0.0,
        "slowdown": _r(jct.mean() / lb.mean()) if lb.size else 0.0,
        "gpu_hours": _r(sum(j.gpus * j.duration_s for j in jobs) / 3600),
        "preemptions": sum(j.preemptions for j in jobs),
    }


def _integral(t: np.ndarray, v: np.ndarray, end_s: float) -> float:
    """Integral of a step function (value v[i] from t[i] to t[i+1]) up to end_s."""
    if t.size == 0:
        return 0.0
    widths = np.diff(np.append(t, end_s))
    return float((v * widths).sum())


def _integral_between(t: np.ndarray, v: np.ndarray, start_s: float, end_s: float) -> float:
    """Integral of the step function from start_s to end_s (both inside the run)."""
    if t.size == 0 or end_s <= start_s:
        return 0.0
    edges = np.clip(np.append(t, np.inf), start_s, end_s)
    return float((v * np.diff(edges)).sum())


def hourly(timeline: Timeline, end_s: float) -> dict[str, list]:
    """Values at each whole hour of the simulation (the step function sampled)."""
    t = np.frombuffer(timeline.t_s, dtype=np.float64)
    hours = np.arange(0.0, end_s + 3600, 3600)
    idx = np.searchsorted(t, hours, side="right") - 1
    idx = np.clip(idx, 0, max(t.size - 1, 0))
    alloc = np.frombuffer(timeline.allocated_gpus, dtype=np.int64)
    wait = np.frombuffer(timeline.waiting_jobs, dtype=np.int64)
    if t.size == 0:
        return {"hour": [], "allocated_gpus": [], "waiting_jobs": []}
    return {"hour": list(range(hours.size)), "allocated_gpus": alloc[idx].tolist(),
            "waiting_jobs": wait[idx].tolist()}


def summarize(outcome: SimOutcome, *, fleet: str, fleet_gpus: int, trace: str, policy: str,
              seed: int, load_target: float | None, load_offered: float,
              time_factor: float, dropped_rows: dict[str, int]) -> dict:
    jobs = outcome.jobs
    finished = [j for j in jobs if j.state is JobState.DONE]
    rejected = [j for j in jobs if j.state is JobState.REJECTED]
    tl = outcome.timeline
    t = np.frombuffer(tl.t_s, dtype=np.float64)
    end_s = outcome.end_s
    alloc = np.frombuffer(tl.allocated_gpus, dtype=np.int64)
    waiting = np.frombuffer(tl.waiting_jobs, dtype=np.int64)
    frag = np.frombuffer(tl.fragmented_gpus, dtype=np.int64)
    idle_while_waiting = np.where(waiting > 0, fleet_gpus - alloc, 0)
    first = jobs[0].submit_s if jobs else 0.0
    last = max((j.submit_s for j in jobs), default=first)
    span = max(end_s - first, 1e-9)
    by_tier = {tier: [j for j in finished if j.tenant.tier.value == tier] for tier in TIERS}
    tenants = sorted({j.tenant.name for j in jobs})
    reasons = Counter(j.reason.split(" (")[0] for j in rejected)
    return {
        "schema": SCHEMA_VERSION,
        "fleet": fleet,
        "fleet_gpus": fleet_gpus,
        "trace": trace,
        "policy": policy,
        "seed": seed,
        "load": {"target": load_target, "offered": _r(load_offered),
                 "time_factor": round(time_factor, 6)},
        "jobs": {"submitted": len(jobs), "finished": len(finished), "rejected": len(rejected),
                 "unfinished": len(jobs) - len(finished) - len(rejected),
                 "dropped_trace_rows": dict(sorted(dropped_rows.items()))},
        "rejections": dict(sorted(reasons.items())),
        "overall": _group(finished),
        "per_tier": {k: _group(v) for k, v in by_tier.items() if v},
        "per_tenant": {name: _group([j for j in finished if j.tenant.name == name])
                       for name in tenants if any(j.tenant.name == name for j in finished)},
        "makespan_s": _r(end_s - first),
        "utilization": _r(_integral(t, alloc, end_s) / (fleet_gpus * span)),
        # over the arrival window (first to last submission), where the offered load applies;
        # the whole run's figure also counts the tail after the last arrival
        "utilization_arrival_window": _r(
            _integral_between(t, alloc, first, last) / (fleet_gpus * (last - first))
            if last > first else 0.0),
        "peak_waiting_jobs": int(waiting.max()) if waiting.size else 0,
        "preemptions": sum(j.preemptions for j in jobs),
        "lost_gpu_hours": _r(sum(j.lost_gpu_s for j in jobs) / 3600),
        "idle_gpu_hours_while_waiting": _r(_integral(t, idle_while_waiting, end_s) / 3600),
        "fragmented_gpu_hours": _r(_integral(t, frag, end_s) / 3600),
        "timeline": hourly(tl, end_s),
    }


def decision_time(outcome: SimOutcome) -> dict[str, float]:
    c = np.frombuffer(outcome.cycle_s, dtype=np.float64) * 1e3
    if c.size == 0:
        return {"cycles": 0}
    return {"cycles": int(c.size), "mean_ms": float(c.mean()),
            "p50_ms": float(np.percentile(c, 50)), "p99_ms": float(np.percentile(c, 99)),
            "max_ms": float(c.max()), "total_s": float(c.sum() / 1e3)}


def job_table(jobs: list[Job], energy: dict | None = None) -> pa.Table:
    """Per-job records (jobs.parquet), with the energy books' columns when kept."""
    extra = {k: pa.array(v) for k, v in (energy or {}).items()}
    return pa.table({**{
        "job_id": [j.name for j in jobs],
        "tenant": [j.tenant.name for j in jobs],
        "tier": [j.tenant.tier.value for j in jobs],
        "gpus": pa.array([j.gpus for j in jobs], pa.int32()),
        "gpu_model": pa.array([j.pool.model if j.pool else j.gpu_model for j in jobs], pa.string()),
        "site": pa.array([j.pool.site.name if j.pool else None for j in jobs], pa.string()),
        "state": [j.state.value for j in jobs],
        "submit_s": [j.submit_s for j in jobs],
        "first_start_s": [j.first_start_s if j.first_start_s >= 0 else None for j in jobs],
        "finish_s": [j.finish_s if j.finish_s >= 0 else None for j in jobs],
        "duration_s": [j.duration_s for j in jobs],
        "preemptions": pa.array([j.preemptions for j in jobs], pa.int32()),
        "lost_gpu_s": [j.lost_gpu_s for j in jobs],
        "reason": [j.reason for j in jobs],
    }, **extra})
