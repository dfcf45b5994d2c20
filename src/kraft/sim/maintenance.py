"""A maintenance plan for the twin: `kraft simulate --maintenance plan.csv`.

CSV with a header `target,start_h,end_h[,reason]`: a node (`site/pod-n000`), a pod
(`site/pod`) or a site, out of service from start_h to end_h hours after the trace's start.
The scheduler honours each window as the live service does (kraft.sched.scheduler
`set_maintenance`): before it, only jobs that would end first start on its nodes.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

HEADER = ("target", "start_h", "end_h")


def load_plan(path: Path) -> tuple[tuple[str, float, float], ...]:
    """The plan's windows as (target, start_s, end_s); a ValueError names the file, the line
    and what is allowed."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the maintenance plan: {e.strerror}") from None
    rows = list(csv.DictReader(text.splitlines()))
    missing = [c for c in HEADER if c not in (rows[0].keys() if rows else ())]
    if missing:
        raise ValueError(f"{path}: a maintenance plan is CSV with the header "
                         f"{','.join(HEADER)}[,reason]; missing {', '.join(missing)}")
    out = []
    for line, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start_h"]), float(row["end_h"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{line}: start_h and end_h are hours from the trace's "
                             f"start (numbers)") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ValueError(f"{path}:{line}: the window must satisfy 0 <= start_h < end_h")
        if not (row["target"] or "").strip():
            raise ValueError(f"{path}:{line}: target: a node, pod or site name")
        out.append((row["target"].strip(), start * 3600.0, end * 3600.0))
    return tuple(out)


def node_hours(cluster, plan) -> float:
    """Node-hours the plan takes out of service."""
    return sum(len(cluster.nodes_of(t)) * (e - s) / 3600.0 for t, s, e in plan)
