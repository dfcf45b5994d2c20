"""`kraft admin jobs` and `kraft admin job cancel|hold|release|requeue ID --reason R`: the
operator, on the host, over every tenant's jobs (kraft.control.operator)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from kraft.cliapp import command_group
from kraft.control.cli import DEFAULT_HOME, DataDir, Db, DbFile, _engine, _fail, console

job_app = command_group("Cancel, hold, release or requeue any tenant's job.")
Reason = Annotated[str, typer.Option(help="why: the tenant sees it in the job's events")]


def admin_jobs(tenant: Annotated[Optional[str], typer.Option()] = None,
               state: Annotated[Optional[str], typer.Option()] = None,
               site: Annotated[Optional[str], typer.Option(help="running there")] = None,
               limit: int = 200,
               output: Annotated[str, typer.Option("-o", "--output", help="table or json")]
               = "table",
               data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """Every tenant's jobs, newest first."""
    from kraft.control.operator import all_jobs
    from kraft.control.store import as_utc, sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        rows = all_jobs(s, tenant, state, site, limit)
    if output == "json":
        console.print_json(json.dumps([{"id": r.id, "tenant": r.tenant, "name": r.name,
                                        "state": r.state, "gpus": r.spec["gpus"],
                                        "reason": r.reason, "placement": r.placement}
                                       for r in rows]))
        return
    table = Table("id", "tenant", "name", "state", "GPUs", "submitted UTC", "nodes", "reason")
    for r in rows:
        nodes = ",".join(p["node"] for p in r.placement or []) if r.state == "running" else ""
        table.add_row(str(r.id), Text(r.tenant), Text(r.name), r.state, str(r.spec["gpus"]),
                      as_utc(r.submitted_at).strftime("%m-%d %H:%M:%S"), Text(nodes),
                      Text(r.reason))
    console.print(table)


def _act(action: str, job_id: int, reason: str, data_dir, db, db_file) -> None:
    from kraft.control.operator import request
    from kraft.control.store import sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        try:  # no such job, no reason, or not in a state the action applies to
            said = request(s, job_id, action, reason, "operator", "local")
        except (LookupError, ValueError) as e:
            _fail(str(e.args[0]))
        s.commit()
    console.print(Text(f"job {job_id}: {said}"))


def _command(action: str, doc: str):
    def run(job_id: int, reason: Reason = "", data_dir: DataDir = DEFAULT_HOME, db: Db = None,
            db_file: DbFile = None) -> None:
        _act(action, job_id, reason, data_dir, db, db_file)
    run.__doc__ = doc
    job_app.command(action)(run)


for _action, _doc in (("cancel", "Cancel any tenant's job, with the reason it is told."),
                      ("hold", "Take a waiting job out of the queue until released."),
                      ("release", "Put a held job back in the queue, in its place."),
                      ("requeue", "Stop a running job; it queues again with its checkpoint."),
                      ("top", "Put a waiting job first in its tenant's order.")):
    _command(_action, _doc)
