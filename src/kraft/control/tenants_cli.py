"""`kraft admin tenant update|token|delete`: a tenant's life at runtime (kraft.control.tenants)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from kraft.control.cli import DEFAULT_HOME, DataDir, Db, DbFile, _engine, _fail, console


def update(name: str,
           tier: Annotated[Optional[str], typer.Option(help="reserved, on-demand or spot")] = None,
           reserved_gpus: Optional[int] = None,
           quota_gpus: Annotated[Optional[int], typer.Option(help="0: no quota")] = None,
           weight: Optional[float] = None,
           jurisdictions: Annotated[Optional[str], typer.Option(
               help="comma-separated, e.g. EEA ('' for anywhere)")] = None,
           countries: Annotated[Optional[str], typer.Option(help="comma-separated")] = None,
           data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """Change a tenant: the scheduler uses it from its next cycle, without a restart (a
    lowered reservation or quota stops new starts; running work goes on)."""
    from pydantic import ValidationError

    from kraft.control.store import TenantRow, sessions
    from kraft.control.tenants import update as apply
    from kraft.spec.load import format_validation_error

    changes = {k: v for k, v in (("tier", tier), ("reserved_gpus", reserved_gpus),
                                 ("weight", weight)) if v is not None}
    if quota_gpus is not None:
        changes["quota_gpus"] = quota_gpus or None
    with sessions(_engine(data_dir, db, db_file))() as s:
        row = s.get(TenantRow, name)
        if jurisdictions is not None or countries is not None:
            residency = dict(row.spec.get("residency", {})) if row else {}
            for key, value in (("jurisdictions", jurisdictions), ("countries", countries)):
                if value is not None:
                    residency[key] = [v for v in value.split(",") if v]
            changes["residency"] = residency
        if not changes:
            _fail("nothing to change: give --tier, --reserved-gpus, --quota-gpus, --weight, "
                  "--jurisdictions or --countries")
        try:
            spec = apply(s, name, changes)
        except LookupError as e:
            _fail(e.args[0])
        except ValidationError as e:
            _fail(format_validation_error(f"tenant {name}", e))
        s.commit()
    console.print(Text(f"tenant {name} updated: tier {spec.tier.value}, reserved "
                       f"{spec.reserved_gpus}, quota {spec.quota_gpus}, weight {spec.weight:g}, "
                       f"residency {spec.residency.describe()}"))


def token(name: str,
          label: Annotated[str, typer.Option("--name", help="what to call the token")] = "",
          expires_days: Annotated[Optional[float], typer.Option(
              min=0.001, help="it stops working after this many days")] = None,
          data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """A new API token for a tenant (several may be live); shown once, stored hashed."""
    from kraft.control.store import sessions
    from kraft.control.tenants import add_token

    with sessions(_engine(data_dir, db, db_file))() as s:
        try:
            secret, row = add_token(s, name, label, expires_days)
        except LookupError as e:
            _fail(e.args[0])
        s.commit()
        expiry = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
        console.print(f"token {row.id} for {name}{expiry}")
    console.print(f"token (shown once, stored hashed): [bold]{secret}[/]", soft_wrap=True)


def delete(name: str,
           cancel_all: Annotated[bool, typer.Option(help="cancel its live jobs with it")] = False,
           data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """Delete a tenant: its tokens stop working, its record and books stay. Refused while it
    has live jobs, unless --cancel-all."""
    from kraft.control.store import sessions
    from kraft.control.tenants import delete as remove

    with sessions(_engine(data_dir, db, db_file))() as s:
        try:
            cancelled = remove(s, name, cancel_all)
        except LookupError as e:
            _fail(e.args[0])
        except ValueError as e:
            _fail(str(e))
        s.commit()
    console.print(Text(f"tenant {name} deleted" + (f"; {cancelled} live job(s) cancelled"
                                                   if cancelled else "")))


def register_tenant(tenant_app: typer.Typer) -> None:
    tenant_app.command("update")(update)
    tenant_app.command("token")(token)
    tenant_app.command("delete")(delete)
