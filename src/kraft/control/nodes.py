"""Nodes as the operator sees and changes them: `kraft nodes`, `kraft admin node drain|resume|
down`, `GET /admin/nodes`, `POST /admin/nodes/{drain,resume,down}`.

A node is up unless a row of `nodes` says drain or down. The API and the CLI only write that
row (and the audit log); the scheduling loop reads the table each step and applies changes:
a drained node takes no new work and its jobs run on (`--now`: they are preempted, keeping
their last checkpoint); a down node's jobs are requeued as failures. Shown as Slurm does:
`draining` while jobs still run on a drained node, `drained` once it is empty.

A node the engine reports lost (Slurm down or failed, a dead Ray node) is marked down by the
loop itself (`engine_report`, by `engine:<name>`), with the engine's reason; its jobs requeue
from their last checkpoint as failures, as in the twin. When the engine has it back, the loop
resumes it; a node the operator marked stays as the operator left it.
"""

from __future__ import annotations

import time
from collections import defaultdict

from sqlalchemy import select

from kraft.cluster.state import ClusterState
from kraft.control.store import AuditRow, JobRow, NodeRow, SettingRow, as_utc, iso_s
from kraft.spec.models import FleetSpec

ACTIONS = ("drain", "resume", "down")


def served_fleet(s) -> FleetSpec | None:
    """The fleet `kraft serve` last started with (kept in the database for the operator's
    commands on the host)."""
    row = s.get(SettingRow, "fleet")
    return None if row is None else FleetSpec.model_validate(row.value)


def remember_fleet(s, fleet: FleetSpec) -> None:
    value = fleet.model_dump(mode="json", by_alias=True)
    row = s.get(SettingRow, "fleet")
    if row is None:
        s.add(SettingRow(key="fleet", value=value))
    else:
        row.value = value


def change(s, cluster: ClusterState, action: str, target: str, reason: str, now: bool,
           actor: str, address: str, window: tuple[float, float] | None = None) -> list[str]:
    """Record an operator's drain, resume or down of `target`; the loop acts on it. A drain
    with a `window` (start, end epoch s) is a maintenance window. Returns the node names
    changed. The caller commits."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r}? Use one of {', '.join(ACTIONS)}")
    if window is not None:
        if action != "drain":
            raise ValueError("a maintenance window (--from/--until) is a drain's")
        if now:
            raise ValueError("a maintenance window takes no --now: jobs that would run into "
                             "it do not start there (by their time limits)")
        if not window[0] < window[1]:
            raise ValueError("the window's end (--until) must come after its start (--from)")
    if action != "resume" and not reason.strip():
        raise ValueError(f"{action} needs a reason (--reason): it goes in the audit log and "
                         f"in every affected job's events")
    names = [cluster.node_name[n] for n in cluster.nodes_of(target)]
    for name in names:
        row = s.get(NodeRow, name)
        if action == "resume":
            if row is not None:
                s.delete(row)
            continue
        if row is None:
            row = NodeRow(name=name)
            s.add(row)
        row.state, row.reason, row.by = action, reason, actor
        row.evict = now or action == "down"
        row.start_s, row.end_s = window if window else (None, None)
    flag = " --now" if now and action == "drain" else ""
    if window:
        start, end = (iso_s(t, "minutes") for t in window)
        flag += f" from {start} until {end}"
    s.add(AuditRow(actor=actor, action=f"node.{action}", target=target[:200],
                   address=address, detail=f"{reason}{flag} ({len(names)} node(s))"))
    return names


def engine_report(s, cluster: ClusterState, down: dict[str, str], engine: str) -> bool:
    """Bring the nodes table in line with the engine's report (node name -> why it is
    lost): mark newly lost nodes down, resume the ones the engine marked and has back.
    Returns whether anything changed; the caller commits."""
    actor = f"engine:{engine}"
    known = set(cluster.node_name)
    changed = False
    for name, why in down.items():
        if name not in known or s.get(NodeRow, name) is not None:
            continue  # not this fleet's, or already out (by the operator or before)
        s.add(NodeRow(name=name, state="down", reason=why, by=actor, evict=True))
        s.add(AuditRow(actor=actor, action="node.down", target=name[:200], address="",
                       detail=why))
        changed = True
    for row in s.scalars(select(NodeRow).where(NodeRow.by == actor)):
        if row.name not in down:
            s.delete(row)
            s.add(AuditRow(actor=actor, action="node.resume", target=row.name[:200],
                           address="", detail=f"{engine} has it back"))
            changed = True
    return changed


def view(s, cluster: ClusterState, site: str | None = None) -> dict:
    """Every node (of one site, if given): site, pod, model, GPUs total and allocated, state,
    reason, since, the jobs on it; summed per pod and site."""
    marks = {r.name: r for r in s.scalars(select(NodeRow))}
    on_node: dict[str, list[int]] = defaultdict(list)
    used: dict[str, int] = defaultdict(int)
    index = cluster.node_index()
    for job_id, placement in s.execute(select(JobRow.id, JobRow.placement)
                                       .where(JobRow.state == "running")):
        for rank in placement or []:
            n = index.get(rank["node"])
            if n is not None:
                name = cluster.node_name[n]
                on_node[name].append(job_id)
                used[name] += len(rank["gpus"])
    nodes, pods, sites = [], {}, {}
    for n, name in enumerate(cluster.node_name):
        pool = cluster.pools[cluster.node_pool[n]]
        if site is not None and pool.site.name != site:
            continue
        mark = marks.get(name)
        state = "up" if mark is None else mark.state.replace("drain", "drained")
        window = None
        if mark is not None and mark.start_s is not None:  # maintenance: up until it opens
            window = {"start": iso_s(mark.start_s, "minutes"),
                      "end": iso_s(mark.end_s, "minutes")}
            state = "maint" if mark.start_s <= time.time() else "up"
        if state == "drained" and on_node.get(name):
            state = "draining"
        row = {"node": name, "site": pool.site.name, "pod": cluster.pod_name[cluster.node_pod[n]],
               "model": pool.model, "gpus": pool.gpus_per_node, "allocated": used[name],
               "state": state, "reason": mark.reason if mark else "",
               "since": as_utc(mark.since).isoformat() if mark else None,
               "jobs": sorted(on_node.get(name, [])), "maintenance": window}
        nodes.append(row)
        for key, table in ((row["pod"], pods), (row["site"], sites)):
            t = table.setdefault(key, {"gpus": 0, "allocated": 0, "nodes": 0, "up": 0})
            t["gpus"] += row["gpus"]
            t["allocated"] += row["allocated"]
            t["nodes"] += 1
            t["up"] += state == "up"
    if site is not None and not nodes:
        raise ValueError(f"no site {site!r} in fleet {cluster.fleet.name!r}")
    return {"nodes": nodes, "pods": pods, "sites": sites}
