"""`kraft jobs` and `kraft queue`: a tenant's view of its work, as squeue, sacct, sprio and
sshare give it on a Slurm cluster. Times are shown in UTC, never as raw epochs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from kraft.control.cli import _check, _client, _fail, console

Output = Annotated[str, typer.Option("-o", "--output", help="table, wide or json")]


def _when(iso: str | None) -> str:
    return "-" if not iso else iso[5:16].replace("T", " ")


def _elapsed(job: dict) -> str:
    if not job["started_at"]:
        return "-"
    start = datetime.fromisoformat(job["started_at"])
    end = datetime.fromisoformat(job["finished_at"]) if job["finished_at"] else datetime.now(UTC)
    seconds = int((end - start).total_seconds())
    return str(timedelta(seconds=max(seconds, 0)))


def _site(job: dict) -> str:
    nodes = [p["node"] for p in job.get("placement") or []]
    return ",".join(sorted({n.split("/", 1)[0] for n in nodes})) or "-"


def jobs(state: Annotated[Optional[str], typer.Option(help="only jobs in this state")] = None,
         since: Annotated[Optional[str], typer.Option(
             help="live jobs and those that ended since (ISO time; default: the last day)")
         ] = None,
         all_: Annotated[bool, typer.Option("--all", help="every job, however old")] = False,
         output: Output = "table") -> None:
    """Your jobs, newest first: live ones and those that ended in the last day."""
    if output not in ("table", "wide", "json"):
        _fail(f"-o {output!r}? Use table, wide or json")
    params: dict = {"limit": 10_000}
    if state:
        params["state"] = state
    if not all_:
        params["since"] = since or datetime.fromtimestamp(time.time() - 86400, UTC).isoformat()
    with _client() as c:
        rows = _check(c.get("/v1/jobs", params=params)).json()
    if output == "json":
        console.print_json(json.dumps(rows))
        return
    wide = output == "wide"
    table = Table(caption="times UTC" if rows else None)
    for col in ("id", "name", "state", "GPUs", "site", "submitted",
                *(["started"] if wide else []), "elapsed", *(["attempt", "nodes"] if wide else [])):
        table.add_column(col, no_wrap=True)  # a name stays whole: it is what a user looks for
    table.add_column("reason", overflow="fold" if wide else "ellipsis", no_wrap=not wide)
    for j in rows:  # tenants' strings are never read as Rich markup
        cells = [str(j["id"]), Text(j["name"]), j["state"], str(j["gpus"]), _site(j),
                 _when(j["submitted_at"])]
        if wide:
            cells.append(_when(j["started_at"]))
        cells.append(_elapsed(j))
        if wide:
            cells += [str(j["attempt"]),
                      ",".join(p["node"] for p in j.get("placement") or []) or "-"]
        table.add_row(*cells, Text(j["reason"]))
    console.print(table)


def queue(output: Output = "table") -> None:
    """Your waiting jobs in the order the scheduler will take them, with your fair share."""
    with _client() as c:
        q = _check(c.get("/v1/queue")).json()
    if output == "json":
        console.print_json(json.dumps(q))
        return
    if q["as_of"] is None:
        console.print("nothing on record yet: the scheduler writes the queue each second")
        return
    standing = (f"share {q['share']:.1%} of the weights of the tenants with work, usage "
                f"{q['usage']:.1%} of their recent use ({q['usage_gpu_hours']:,.1f} decayed "
                f"GPU-hours)" if q["policy"] == "fairshare" else
                f"policy {q['policy']}: usage does not order the queue")
    console.print(Text(
        f"{q['tenant']}: {standing}; {q['running_gpus']} GPUs running, "
        f"{q['reserved_gpus']} reserved" + (f", quota {q['quota_gpus']}" if q.get("quota_gpus")
                                            else "")
        + f" (as of {_when(q['as_of'])} UTC)"), highlight=False)
    table = Table(caption="position: among every tenant's waiting jobs; times UTC")
    for col in ("position", "id", "name", "GPUs", "submitted", "expected start"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for j in q["jobs"]:
        table.add_row(str(j["position"] or "deferred"), str(j["id"]), Text(j["name"]),
                      str(j["gpus"]), _when(j["submitted"]), _when(j["expected_start"]),
                      Text(j["reason"]))
    console.print(table)
