"""Temporal shifting: start a flexible job at the time in its window when a signal (grid
carbon intensity, or price) averaged over its run is lowest, as forecast at submission.

The scheduler asks `plan(job, now)` on submission; a job planned for later waits, deferred,
until then, then competes as usual. The forecast (`kraft.signals.forecast`) is the recorded
series itself in a replay by default (a perfect forecast: an upper estimate of what a real
one achieves), or one that uses only the past, as the live service must. `origin_s` puts the
body's clock on the series': hour h of the series starts at origin_s + 3600 h (the twin: 0;
live: 1 January of this year, UTC). Pure lookups, no clock, no I/O.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from kraft.sched.job import Job
from kraft.signals.forecast import Forecast, Oracle
from kraft.signals.series import HourlyIntegral


class SignalShift:
    """`by` names the signal ("carbon" or "price"); one hourly series per site."""

    def __init__(self, hourly_by_site: dict[str, np.ndarray], by: str = "carbon",
                 forecast: Forecast | None = None, origin_s: float = 0.0):
        self.by = by
        self.series = {site: HourlyIntegral(v) for site, v in hourly_by_site.items()}
        self.forecast = forecast or Oracle()
        self.origin_s = origin_s

    def value_at(self, site: str, t: float) -> float:
        """The signal at `t` at a site, this hour (for the site weigher: observed live)."""
        f = self.series[site]
        return float(f.x[int((t - self.origin_s) // 3600) % len(f.x)])

    def _means(self, site: str, now: float, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The forecast mean of the signal over each [start, end), as known at `now`."""
        f = self.series[site]
        t_now = now - self.origin_s
        if self.forecast.perfect:
            return f.mean(starts - self.origin_s, ends - self.origin_s)
        base = (t_now // 3600) * 3600
        hours = int((ends.max() - now) // 3600) + 2
        ahead = HourlyIntegral(self.forecast.window(f.x, t_now, hours))
        return ahead.mean(starts - self.origin_s - base, ends - self.origin_s - base)

    def best(self, job: Job, now: float) -> tuple[float, float, float]:
        """(best start, signal mean then, signal mean if started now) over the job's sites."""
        first = math.ceil(now / 3600.0) * 3600.0
        starts = np.concatenate([[now], np.arange(first, now + job.flex_window_s + 1, 3600.0)])
        ends = starts + job.duration_s
        best = (now, math.inf, math.inf)
        for site in {p.site.name for p in job.pools}:
            means = self._means(site, now, starts, ends)
            k = int(np.argmin(means))  # the earliest of equal minima
            if means[k] < best[1]:
                best = (float(starts[k]), float(means[k]), float(means[0]))
        return best

    def plan(self, job: Job, now: float) -> tuple[float, str]:
        """When `job` should start, and why."""
        start, then, at_once = self.best(job, now)
        unit = "g/kWh" if self.by == "carbon" else "EUR/MWh"
        if start <= now:
            return start, (f"waiting: queued, not deferred: {self.by} {at_once:.0f} {unit} over "
                           f"its run if started now, the lowest in its window "
                           f"({self.forecast.name} forecast)")
        when = (f"t={start:.0f}s" if not self.origin_s else
                datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC"))
        return start, (f"waiting: deferred to {when}, {self.by} {then:.0f} {unit} over its "
                       f"run against {at_once:.0f} if started now ({self.forecast.name} "
                       f"forecast)")
