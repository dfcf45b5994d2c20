"""Where a report's record comes from: a simulation's results folder (`record.parquet`,
written by `kraft simulate --out`) or what ran live (the attempts table). Both give a
`Source`, and every report is computed from a Source by the same code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kraft.cluster.state import ClusterState
from kraft.energy.books import EnergyInputs, books, inputs_for
from kraft.record import Record, read_record
from kraft.reporting.hours import calendar_origin


@dataclass
class Source:
    record: Record
    cluster: ClusterState
    inputs: EnergyInputs
    period: tuple[float, float]  # [t0, t1) on the record's clock
    year: int
    said: str  # what the period is, in words

    @property
    def origin(self) -> datetime:
        return calendar_origin(self.record, self.inputs)

    @property
    def hours(self) -> float:
        return (self.period[1] - self.period[0]) / 3600

    def books(self) -> tuple[dict, dict]:
        return books(self.record, self.cluster, self.inputs, self.period)


def from_results(folder: Path, fleet, data_dir: Path | None, year: int | None) -> Source:
    """`fleet`: the run's FleetSpec (results.json names it)."""
    res_path, rec_path = folder / "results.json", folder / "record.parquet"
    for p in (res_path, rec_path):
        if not p.exists():
            raise ValueError(f"{p}: not found; write it with kraft simulate --out {folder}")
    res = json.loads(res_path.read_text())
    if "energy" not in res:
        raise ValueError(f"{res_path}: the run kept no energy books (--no-energy)")
    energy = res["energy"]
    signal_year = energy["signal_year"]
    if year is not None and year != signal_year:
        raise ValueError(f"{res_path}: the run used signal year {signal_year}, not {year}")
    inputs = inputs_for(fleet, signal_year, data_dir, energy["gpu_utilization"],
                        energy["mfu"])
    t0, t1 = energy["period_s"]
    return Source(read_record(rec_path), ClusterState(fleet), inputs, (t0, t1), signal_year,
                  f"simulated: {res['trace']} under {res['policy']} on {res['fleet']}, "
                  f"the run's {(t1 - t0) / 86400:,.1f} days mapped onto {signal_year}")


def from_live(s, live, year: int | None, now: float, tenant: str | None = None) -> Source:
    """The attempts of `year` (to now), from the first one on record: before it the site was
    not Kraft's to account for. No year: everything from the first attempt (of `tenant`) on.
    `tenant` keeps only its attempts: right for its jobs' figures, not for a site's."""
    from sqlalchemy import func, select

    from kraft.control.store import AttemptRow

    q = select(func.min(AttemptRow.start_s))
    if tenant is not None:
        q = q.where(AttemptRow.tenant == tenant)
    first = s.scalar(q)
    if year is None:
        start, end = first or now, now
    else:
        start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
        end = min(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp(), now)
    if first is None or first >= end:
        raise ValueError(f"no job ran live in {year}" if year else "no job ran live")
    a = max(start, first)
    record = live.record(s, a, end, tenant)
    said = (f"live record {datetime.fromtimestamp(a, UTC):%Y-%m-%d %H:%M} to "
            f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC")
    origin = record.origin_s
    return Source(record, live.cluster, live.inputs, (a - origin, end - origin),
                  year or datetime.fromtimestamp(a, UTC).year, said)
