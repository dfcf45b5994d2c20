"""Temporal shifting: start a flexible job at the time in its window when a signal (grid
carbon intensity, or price) averaged over its run is lowest.

The scheduler asks `plan(job, now)` on submission; a job planned for later waits, deferred,
until then, then competes as usual. The forecast is the recorded series itself (a perfect
forecast): results are an upper estimate of what a real forecast would achieve. Pure lookups,
no clock, no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from kraft.sched.job import Job
from kraft.signals.series import HourlyIntegral


class SignalShift:
    """`by` names the signal ("carbon" or "price"); one hourly series per site."""

    def __init__(self, hourly_by_site: dict[str, np.ndarray], by: str = "carbon"):
        self.by = by
        self.series = {site: HourlyIntegral(v) for site, v in hourly_by_site.items()}

    def value_at(self, site: str, t: float) -> float:
        """The signal at `t` at a site (for the site weigher)."""
        f = self.series[site]
        return float(f.x[int(t // 3600) % len(f.x)])

    def best(self, job: Job, now: float) -> tuple[float, float, float]:
        """(best start, signal mean then, signal mean if started now) over the job's sites."""
        first = math.ceil(now / 3600.0) * 3600.0
        starts = np.concatenate([[now], np.arange(first, now + job.flex_window_s + 1, 3600.0)])
        ends = starts + job.duration_s
        best = (now, math.inf, math.inf)
        for site in {p.site.name for p in job.pools}:
            means = self.series[site].mean(starts, ends)
            k = int(np.argmin(means))  # the earliest of equal minima
            if means[k] < best[1]:
                best = (float(starts[k]), float(means[k]), float(means[0]))
        return best

    def plan(self, job: Job, now: float) -> tuple[float, str]:
        """When `job` should start, and why."""
        start, then, at_once = self.best(job, now)
        unit = "g/kWh" if self.by == "carbon" else "EUR/MWh"
        return start, (f"waiting: deferred to t={start:.0f}s, {self.by} {then:.0f} {unit} "
                       f"over its run against {at_once:.0f} if started now")
