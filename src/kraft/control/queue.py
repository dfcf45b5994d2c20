"""A tenant's queue as the scheduler sees it (`kraft queue`, `GET /v1/queue`), as Slurm's
`sprio` and `sshare` show it: the tenant's waiting jobs in the order the policy will take
them (the position counts every tenant's jobs ahead), the head job's expected start (by the
running jobs' planned ends), and the tenant's fair-share standing (its share of the weights
against its share of the decayed usage). The loop writes a snapshot each second for the
tenants whose queue changed; an API process reads it from the database, so it holds with the
loop in another process.
"""

from __future__ import annotations

from kraft.sched.scheduler import Scheduler


def snapshot(sched: Scheduler, now: float) -> dict[str, dict]:
    """Each tenant's queue and standing now, keyed by tenant."""
    tenants = sched.tenants.values()
    weights = sum(t.weight for t in tenants) or 1.0
    used = sum(t.usage_gpu_s for t in tenants)
    out = {t.name: {"policy": sched.policy.name, "share": round(t.weight / weights, 6),
                    "usage": round(t.usage_gpu_s / used, 6) if used else 0.0,
                    "usage_gpu_hours": round(t.usage_gpu_s / 3600, 3),
                    "running_gpus": t.running_gpus, "reserved_gpus": t.reserved_gpus,
                    "quota_gpus": t.quota_gpus, "jobs": []} for t in tenants}
    for position, job in enumerate(sched.policy.order(now), start=1):
        # the head's start, by the running jobs' planned ends; the later ones' depend on it
        expected = sched.expected_start(job, now) if position == 1 else None
        out[job.tenant.name]["jobs"].append(_row(job, position, expected))
    for planned, _, job in sorted(sched.deferred):  # shifted: waiting for their hour
        out[job.tenant.name]["jobs"].append(_row(job, None, planned))
    return out


def _row(job, position: int | None, expected_s: float | None) -> dict:
    return {"id": job.id, "name": job.name, "gpus": job.gpus, "position": position,
            "submitted_s": job.submit_s, "expected_start_s": expected_s,
            "reason": job.reason}
