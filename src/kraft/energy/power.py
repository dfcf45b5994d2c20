"""The power of a site: one place for the budget (`ClusterState`), the books and the gauge.

A GPU draws its idle power all the time and, while allocated, up to its rated power (or the
site's cap); its host adds `host_overhead_share` on top of either. The budget plans with
utilisation 1 (the worst case); the books use the run's assumed utilisation. Facility power is
IT power times the PUE at the outdoor temperature of the hour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kraft.catalog import CATALOG
from kraft.energy.models import capped_power_w, gpu_power_w, pue
from kraft.spec.models import SiteSpec

# A site with no weather series is taken at 15 C all year (the ISO standard atmosphere's
# sea-level temperature): below every free-cooling limit Kraft ships, so PUE = pue_free.
DEFAULT_OUTDOOR_C = 15.0


@dataclass(frozen=True, slots=True)
class GpuPower:
    """One GPU of a pool, its host's share included."""

    idle_w: float
    busy_w: float

    @property
    def extra_w(self) -> float:
        return self.busy_w - self.idle_w


def gpu_power(site: SiteSpec, model: str, utilization: float = 1.0) -> GpuPower:
    gpu = CATALOG[model]
    host = 1.0 + site.host_overhead_share
    busy = min(gpu_power_w(gpu, utilization), capped_power_w(gpu, site.gpu_power_cap_w))
    return GpuPower(gpu.idle_power_w * host, busy * host)


def it_power_w(pools, busy_gpus: dict[int, int], utilization: float = 1.0) -> float:
    """IT power of the given pools now: every GPU idle, plus the extra of the busy ones.
    `busy_gpus`: allocated GPUs by pool index."""
    total = 0.0
    for p in pools:
        w = gpu_power(p.site, p.model, utilization)
        total += p.total_gpus * w.idle_w + busy_gpus.get(p.index, 0) * w.extra_w
    return total


def site_pue(site: SiteSpec, outdoor_c: float | np.ndarray | None) -> np.ndarray:
    temp = DEFAULT_OUTDOOR_C if outdoor_c is None else outdoor_c
    return pue(site.cooling, np.atleast_1d(np.asarray(temp, dtype=float)))
