"""A tenant's life at runtime: update its spec (the loop picks it up without a restart), give
it another token (named, with an expiry), delete it (refused while it has live work, unless
its jobs are cancelled with it). Shared by `kraft admin tenant …` and the operator's API."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from kraft.control.auth import hash_token, new_token
from kraft.control.store import FINAL, AuditRow, JobRow, TenantRow, TokenRow, utcnow
from kraft.spec.models import TenantSpec


def _live(s, name: str) -> TenantRow:
    row = s.get(TenantRow, name)
    if row is None:
        raise LookupError(f"no tenant {name!r}")
    if row.deleted_at is not None:
        raise LookupError(f"tenant {name!r} was deleted")
    return row


def update(s, name: str, changes: dict, actor: str = "operator", address: str = "local"
           ) -> TenantSpec:
    """Apply `changes` (TenantSpec fields) and validate the result; a ValidationError says
    which field is wrong. A lowered reservation or quota stops new starts, it kills nothing."""
    row = _live(s, name)
    spec = TenantSpec.model_validate({**row.spec, **changes, "name": name})
    row.spec = spec.model_dump(mode="json")
    s.add(AuditRow(actor=actor, action="tenant.update", target=name, address=address,
                   detail=", ".join(f"{k}={v}" for k, v in sorted(changes.items()))))
    return spec


def add_token(s, name: str, token_name: str = "", expires_days: float | None = None,
              actor: str = "operator", address: str = "local") -> tuple[str, TokenRow]:
    """A new token for a tenant (several may be live); shown once, stored hashed."""
    _live(s, name)
    token = new_token()
    row = TokenRow(tenant=name, token_hash=hash_token(token), name=token_name,
                   expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None)
    s.add(row)
    s.flush()
    s.add(AuditRow(actor=actor, action="token.create", target=f"{name}/{row.id}",
                   address=address, detail=token_name))
    return token, row


def delete(s, name: str, cancel_all: bool = False, actor: str = "operator",
           address: str = "local") -> int:
    """Delete a tenant: its tokens stop working; its record stays (jobs, books). Refused while
    it has live work, unless `cancel_all`. Returns the jobs cancelled."""
    row = _live(s, name)
    live = s.scalar(select(func.count()).select_from(JobRow).where(
        JobRow.tenant == name, JobRow.state.not_in(FINAL)))
    if live and not cancel_all:
        raise ValueError(f"tenant {name!r} has {live} live job(s): cancel them first, or "
                         f"delete with --cancel-all")
    for job in s.scalars(select(JobRow).where(JobRow.tenant == name,
                                              JobRow.state.not_in(FINAL))):
        job.cancel_requested = True
        job.cancel_reason = "cancelled by the operator: the tenant was deleted"
    for tok in s.scalars(select(TokenRow).where(TokenRow.tenant == name)):
        tok.revoked = True
    row.deleted_at = utcnow()
    s.add(AuditRow(actor=actor, action="tenant.delete", target=name, address=address,
                   detail=f"{live} live job(s) cancelled" if live else ""))
    return live
