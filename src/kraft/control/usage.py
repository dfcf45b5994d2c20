"""The live books: usage of what ran, from the attempts table, through the one `books`.

`kraft job ID`, `kraft usage`, `GET /v1/usage`, `GET /admin/usage`, the per-tenant counters of
/metrics and `kraft report eed --db` all read it. Each attempt is a segment of the record
(kraft.record); a running attempt counts up to now. The signals are the sites' hourly series
of the signal year (default 2024), read at this year's hour: hour h of 2026 reads hour h of
the 2024 series (docs/energy.md, "Live books").
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, or_, select

from kraft.cluster.state import ClusterState
from kraft.control.store import AttemptRow, JobRow, TenantRow, iso_s
from kraft.energy.books import SEGMENT_COLUMNS, EnergyInputs, books, inputs_for
from kraft.record import ENDED, ENDINGS, Record, year_origin_s
from kraft.spec.models import FleetSpec

BY = ("tenant", "site", "day", "job")
DAY_S = 86400.0
# An attempt is closed with end_s = the loop's clock at the close (ControlPlane._move), so one
# that ended this long ago is on record for good: its books never change again. The margin
# covers a close's commit landing late and clocks of failed-over hosts a little apart.
SETTLED_S = 300.0


class LiveBooks:
    def __init__(self, fleet: FleetSpec, inputs: EnergyInputs | None = None,
                 cluster: ClusterState | None = None):
        self.cluster = cluster or ClusterState(fleet)
        self.pool_of = {p.label: p.index for p in self.cluster.pools}
        self._inputs = inputs
        self.fleet = fleet
        self._settled_until_s = -math.inf  # tenant_totals: attempts ended before this...
        self._settled: dict[str, dict[str, float]] = {}  # ...summed here, per tenant

    @property
    def inputs(self) -> EnergyInputs:
        """The sites' series, loaded on first use (a fleet without them is a ValueError that
        says which series is missing)."""
        if self._inputs is None:
            self._inputs = inputs_for(self.fleet)
        return self._inputs

    def record(self, s, since_s: float, until_s: float, tenant: str | None = None,
               job_id: int | None = None, where=None) -> Record:
        """Attempts that overlap [since, until) (and meet `where`), on the clock of since's
        UTC year."""
        q = select(AttemptRow, JobRow.name).join(JobRow, JobRow.id == AttemptRow.job_id).where(
            AttemptRow.start_s < until_s,
            or_(AttemptRow.end_s.is_(None), AttemptRow.end_s > since_s))
        if where is not None:
            q = q.where(where)
        if tenant is not None:
            q = q.where(AttemptRow.tenant == tenant)
        if job_id is not None:
            q = q.where(AttemptRow.job_id == job_id)
        rows = [(a, name) for a, name in s.execute(q.order_by(AttemptRow.job_id,
                                                              AttemptRow.attempt))
                if a.pool in self.pool_of]  # a pool the fleet no longer has: not this fleet's
        tiers = {t.name: t.spec.get("tier", "on-demand")
                 for t in s.scalars(select(TenantRow))}
        origin = year_origin_s(since_s)
        job_ix: dict[int, int] = {}
        names, tenants, job_ids = [], [], []
        for a, name in rows:
            if a.job_id not in job_ix:
                job_ix[a.job_id] = len(job_ix)
                names.append(name)
                tenants.append(a.tenant)
                job_ids.append(a.job_id)
        end = [until_s if a.end_s is None else min(a.end_s, until_s) for a, _ in rows]
        rec = Record(
            job=np.array([job_ix[a.job_id] for a, _ in rows], dtype=np.int64),
            attempt=np.array([a.attempt for a, _ in rows], dtype=np.int64),
            pool=np.array([self.pool_of[a.pool] for a, _ in rows], dtype=np.int64),
            gpus=np.array([a.gpus for a, _ in rows], dtype=np.int64),
            start_s=np.array([a.start_s for a, _ in rows], dtype=np.float64) - origin,
            end_s=np.array(end, dtype=np.float64) - origin,
            ended=np.array([ENDED[a.ended or "running"] for a, _ in rows], dtype=np.int8),
            job_tenant=tenants, job_tier=[tiers.get(t, "on-demand") for t in tenants],
            job_name=names, end_of_record_s=until_s - origin, origin_s=origin,
            nodes=[a.nodes for a, _ in rows], job_ids=job_ids)
        return rec

    def attempts(self, s, job_id: int, now: float | None = None) -> list[dict]:
        """Each attempt of a job with its books, to now."""
        now = time.time() if now is None else now
        first = s.scalar(select(AttemptRow.start_s).where(AttemptRow.job_id == job_id)
                         .order_by(AttemptRow.attempt).limit(1))
        if first is None:
            return []
        rec = self.record(s, first, max(now, first), job_id=job_id)
        _, cols = books(rec, self.cluster, self.inputs,
                        (rec.start_s.min(), rec.end_of_record_s))
        out = []
        for k in range(len(rec)):
            start, end = rec.start_s[k] + rec.origin_s, rec.end_s[k] + rec.origin_s
            out.append({"attempt": int(rec.attempt[k]),
                        "site": self.cluster.pools[rec.pool[k]].site.name,
                        "pool": self.cluster.pools[rec.pool[k]].label,
                        "nodes": rec.nodes[k], "gpus": int(rec.gpus[k]),
                        "start": iso_s(start), "end": iso_s(end) if rec.ended[k] !=
                        ENDED["running"] else None, "ended": _ending(rec.ended[k]),
                        **{c: round(float(cols[c][k]), 6) for c in SEGMENT_COLUMNS}})
        return out

    def tenant_totals(self, s, now: float) -> dict[str, dict[str, float]]:
        """Each tenant's books over every attempt on record, to now (the counters of
        /metrics). Attempts settled (ended SETTLED_S ago) are summed once and kept; each call
        counts only the running and the recently ended ones, however long the record."""
        settled_until = now - SETTLED_S
        if settled_until > self._settled_until_s:
            newly = AttemptRow.end_s.is_not(None) & (AttemptRow.end_s < settled_until) & (
                AttemptRow.end_s >= self._settled_until_s)
            self._add(self._settled, self._tenant_books(s, newly, settled_until))
            self._settled_until_s = settled_until
        recent = AttemptRow.end_s.is_(None) | (AttemptRow.end_s >= self._settled_until_s)
        out = {t: dict(row) for t, row in self._settled.items()}
        self._add(out, self._tenant_books(s, recent, now))
        return out

    def _tenant_books(self, s, where, until_s: float) -> dict[str, dict[str, float]]:
        first = s.scalar(select(func.min(AttemptRow.start_s)).where(where))
        if first is None:
            return {}
        rec = self.record(s, first, max(until_s, first + 1e-3), where=where)
        _, cols = books(rec, self.cluster, self.inputs, (rec.start_s.min(),
                                                         rec.end_of_record_s))
        out: dict[str, dict[str, float]] = {}
        for k, j in enumerate(rec.job):
            row = out.setdefault(rec.job_tenant[j], dict.fromkeys(SEGMENT_COLUMNS, 0.0))
            for c in SEGMENT_COLUMNS:
                row[c] += float(cols[c][k])
        return out

    @staticmethod
    def _add(into: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> None:
        for tenant, row in more.items():
            mine = into.setdefault(tenant, dict.fromkeys(SEGMENT_COLUMNS, 0.0))
            for c, v in row.items():
                mine[c] += v

    def usage(self, s, since_s: float, until_s: float, by: str = "tenant",
              tenant: str | None = None, with_sites: bool = False) -> dict:
        """Figures summed by tenant, site, day or job over [since, until); a tenant's own only
        when `tenant` is given. `with_sites`: the sites' own books too (idle GPUs, PUE) —
        the operator's, never a tenant's."""
        if by not in BY:
            raise ValueError(f"by {by!r}? Use one of {', '.join(BY)}")
        if until_s <= since_s:
            raise ValueError("until must be after since")
        rec = self.record(s, since_s, until_s, tenant)
        t0, t1 = since_s - rec.origin_s, until_s - rec.origin_s
        keys: dict[str, dict[str, float]] = {}
        if by == "day":
            day = np.floor(t0 / DAY_S) * DAY_S
            while day < t1:
                lo, hi = max(day, t0), min(day + DAY_S, t1)
                _, cols = books(rec, self.cluster, self.inputs, (lo, hi))
                if cols["gpu_hours"].sum() > 0:  # a day nothing ran is left out, as sreport does
                    label = datetime.fromtimestamp(day + rec.origin_s, UTC).date().isoformat()
                    keys[label] = {c: float(v.sum()) for c, v in cols.items()}
                day += DAY_S
        else:
            _, cols = books(rec, self.cluster, self.inputs, (t0, t1))
            if by == "tenant":
                labels = [rec.job_tenant[j] for j in rec.job]
            elif by == "site":
                labels = [self.cluster.pools[p].site.name for p in rec.pool]
            else:
                labels = [str(rec.job_ids[j]) for j in rec.job]
            for k, label in enumerate(labels):
                row = keys.setdefault(label, dict.fromkeys(SEGMENT_COLUMNS, 0.0))
                for c in SEGMENT_COLUMNS:
                    row[c] += float(cols[c][k])
        rows = [{by: k, **{c: round(v, 6) for c, v in sorted(row.items())}}
                for k, row in sorted(keys.items())]
        totals = {c: round(sum(r[c] for r in rows), 6) for c in SEGMENT_COLUMNS}
        out = {"since": iso_s(since_s), "until": iso_s(until_s), "by": by, "rows": rows,
               "totals": totals, "attempts": len(rec),
               "carbon_basis": {"location": "grid zone hourly intensity, life-cycle",
                                "market": "site contract factor (GHG Protocol scope 2)"},
               "signal_year": self.inputs.signal_year}
        if with_sites:  # the sites' own books start with the first attempt on record:
            # before it the site was not Kraft's to account for
            first = s.scalar(select(func.min(AttemptRow.start_s)))
            lo = max(t0, (first if first is not None else until_s) - rec.origin_s)
            sites, _ = books(rec, self.cluster, self.inputs, (min(lo, t1), t1))
            out["sites"] = sites["per_site"]
            out["sites_since"] = iso_s(min(lo, t1) + rec.origin_s)
        return out


def _ending(code: int) -> str:
    return ENDINGS[int(code)]


def parse_time(text: str | None, default: float) -> float:
    """An ISO date or time (UTC unless it says), or None for `default`."""
    if text is None:
        return default
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: give an ISO date or time, e.g. 2026-11-01 or "
                         f"2026-11-01T12:00") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()
