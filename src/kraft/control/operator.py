"""The operator's control of any tenant's jobs: list them all; cancel, hold, release and
requeue one, or put it first in its tenant's order (top), each with a reason in the audit
log and in the job's events.

The API and `kraft admin job` write the request; the loop carries it out (kraft.control.service
`_requests`): hold takes a waiting job out of the queue (state `held`, as Slurm's
`scontrol hold`), release puts it back in its place, requeue stops a running job and queues
it again with its checkpoint (as a preemption), cancel is the tenant's cancel with the
operator's reason; top moves a waiting job to the head of its tenant's line (Slurm's
`scontrol top`), other tenants keeping their places.
"""

from __future__ import annotations

from sqlalchemy import select

from kraft.control.store import FINAL, AttemptRow, AuditRow, JobRequestRow, JobRow

ACTIONS = ("cancel", "hold", "release", "requeue", "top")
WAITING = ("pending", "admitted", "preempted")


class Conflict(ValueError):
    """The job is not in a state the action applies to."""


def request(s, job_id: int, action: str, reason: str, actor: str, address: str) -> str:
    """Record the operator's `action` on job `job_id` (the caller commits). LookupError: no
    such job; ValueError: no reason; Conflict: not now."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r}? Use one of {', '.join(ACTIONS)}")
    row = s.get(JobRow, job_id)
    if row is None:
        raise LookupError(f"no job {job_id}")
    if not reason.strip():
        raise ValueError(f"{action} needs a reason (--reason): the tenant sees it in the job's "
                         f"events, and it goes in the audit log")
    state = row.state
    if state in FINAL:
        raise Conflict(f"job {job_id} already ended ({state})")
    if action == "cancel":
        row.cancel_requested = True
        row.cancel_reason = f"cancelled by the operator: {reason}"
        said = "cancel requested"
    elif action == "hold" and state not in WAITING:
        raise Conflict(f"job {job_id} is {state}: only a waiting job can be held (requeue or "
                       f"cancel a running one)")
    elif action == "release" and state != "held":
        raise Conflict(f"job {job_id} is {state}, not held")
    elif action == "top" and state not in WAITING:
        raise Conflict(f"job {job_id} is {state}: only a waiting job can go first in line")
    elif action == "requeue" and state != "running":
        raise Conflict(f"job {job_id} is {state}: only a running job can be requeued")
    if action != "cancel":
        s.add(JobRequestRow(job_id=job_id, action=action, reason=reason, by=actor))
        said = f"{action} requested"
    s.add(AuditRow(actor=actor, action=f"job.{action}", target=str(job_id), address=address,
                   detail=f"{reason} (tenant {row.tenant})"))
    return said


def all_jobs(s, tenant: str | None = None, state: str | None = None, site: str | None = None,
             limit: int = 1000) -> list[JobRow]:
    """Every tenant's jobs, newest first; `site`: those placed there now."""
    q = select(JobRow)
    if tenant:
        q = q.where(JobRow.tenant == tenant)
    if state:
        q = q.where(JobRow.state == state)
    if site:  # its attempt running there (few: the open attempts, by the end_s index)
        q = q.where(JobRow.id.in_(select(AttemptRow.job_id).where(
            AttemptRow.end_s.is_(None), AttemptRow.site == site)))
    return s.scalars(q.order_by(JobRow.id.desc()).limit(limit)).all()
