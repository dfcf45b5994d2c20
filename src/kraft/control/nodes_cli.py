"""`kraft nodes` and `kraft admin node drain|resume|down`: the operator, on the host, against
the database of the running service (whose fleet `kraft serve` keeps there)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from kraft.cliapp import command_group
from kraft.control.cli import DEFAULT_HOME, DataDir, Db, DbFile, _engine, _fail, console

node_app = command_group("Drain, resume or mark down nodes, pods or sites.")
Target = Annotated[str, typer.Argument(help="a node (site/pod-nNNN), a pod (site/pod) or a site")]
Reason = Annotated[str, typer.Option(help="why: in the audit log and each affected job's events")]


def _cluster(s):
    from kraft.cluster.state import ClusterState
    from kraft.control.nodes import served_fleet

    fleet = served_fleet(s)
    if fleet is None:
        _fail("no fleet on record: start `kraft serve` on this database once")
    return ClusterState(fleet)


def nodes(site: Annotated[Optional[str], typer.Option(help="one site")] = None,
          output: Annotated[str, typer.Option("-o", "--output", help="table, wide or json")]
          = "table",
          data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """Nodes with their GPUs, state and jobs, summed per site (like sinfo); -o wide: every
    node."""
    from kraft.control.nodes import view
    from kraft.control.store import sessions

    with sessions(_engine(data_dir, db, db_file))() as s:
        try:
            data = view(s, _cluster(s), site)
        except ValueError as e:
            _fail(str(e))
    if output == "json":
        console.print_json(json.dumps(data))
        return
    if output not in ("table", "wide"):
        _fail(f"-o {output}? Use table, wide or json")
    sites = Table("site", "nodes", "up", "GPUs", "allocated", "free", title="sites",
                  title_justify="left")
    for name, t in data["sites"].items():
        sites.add_row(name, str(t["nodes"]), str(t["up"]), f"{t['gpus']:,}",
                      f"{t['allocated']:,}", f"{t['gpus'] - t['allocated']:,}")
    console.print(sites)
    shown = data["nodes"] if output == "wide" else [n for n in data["nodes"]
                                                    if n["state"] != "up" or n["jobs"]]
    table = Table(title="every node" if output == "wide" else "nodes in use or not up "
                  "(-o wide: all)", title_justify="left")
    table.add_column("node", no_wrap=True)
    for col in ("model", "GPUs", "alloc", "state"):
        table.add_column(col, no_wrap=True)
    for col in ("since UTC", "jobs", "reason"):
        table.add_column(col)
    for n in shown:
        table.add_row(n["node"], n["model"], str(n["gpus"]), str(n["allocated"]), n["state"],
                      (n["since"] or "")[5:16].replace("T", " "),
                      ",".join(map(str, n["jobs"][:8])) + ("…" if len(n["jobs"]) > 8 else ""),
                      Text(n["reason"] + (f" (maintenance {n['maintenance']['start'][:16]} to "
                                          f"{n['maintenance']['end'][:16]})"
                                          if n.get("maintenance") else "")))
    console.print(table)


def _change(action: str, target: str, reason: str, now: bool, data_dir, db, db_file,
            start: str | None = None, until: str | None = None) -> None:
    from kraft.control.nodes import change
    from kraft.control.store import sessions
    from kraft.control.usage import parse_time

    window = None
    try:
        if start is not None or until is not None:
            if start is None or until is None:
                raise ValueError("a maintenance window needs both --from and --until")
            window = (parse_time(start, 0.0), parse_time(until, 0.0))
    except ValueError as e:
        _fail(str(e))
    with sessions(_engine(data_dir, db, db_file))() as s:
        try:
            names = change(s, _cluster(s), action, target, reason, now, "operator", "local",
                           window)
        except ValueError as e:
            _fail(str(e))
        s.commit()
    what = {"drain": "drained" + (" now (jobs preempted)" if now else " (running jobs finish)"),
            "resume": "resumed", "down": "down (jobs requeued as failures)"}[action]
    if window:
        what = (f"under maintenance from {start} until {until} UTC (jobs that would run into "
                f"it do not start there)")
    console.print(Text(f"{len(names)} node(s) {what}: {target}"))


@node_app.command("drain")
def drain(target: Target, reason: Reason = "",
          now: Annotated[bool, typer.Option(help="preempt the jobs on it now (each keeps its "
                                                 "last checkpoint)")] = False,
          start: Annotated[Optional[str], typer.Option(
              "--from", help="a maintenance window from this time (ISO, UTC unless it says)")
          ] = None,
          until: Annotated[Optional[str], typer.Option(
              help="...until this time; the node is back in service after it")] = None,
          data_dir: DataDir = DEFAULT_HOME, db: Db = None, db_file: DbFile = None) -> None:
    """No new work on TARGET; running jobs finish (or, --now, are preempted). With --from
    and --until, a maintenance window: before it only jobs that end first start there."""
    _change("drain", target, reason, now, data_dir, db, db_file, start, until)


@node_app.command("resume")
def resume(target: Target, data_dir: DataDir = DEFAULT_HOME, db: Db = None,
           db_file: DbFile = None) -> None:
    """Put TARGET back into service."""
    _change("resume", target, "", False, data_dir, db, db_file)


@node_app.command("down")
def down(target: Target, reason: Reason = "", data_dir: DataDir = DEFAULT_HOME, db: Db = None,
         db_file: DbFile = None) -> None:
    """TARGET is lost: its jobs requeue from their last checkpoint, counted as failures."""
    _change("down", target, reason, False, data_dir, db, db_file)
