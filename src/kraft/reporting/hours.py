"""The books hour by hour, per site and per tenant at each site: what the monthly scope-2
figures and hourly matching are summed from. Same rules as `kraft.energy.books` (a job is
charged its GPUs' busy power with its hosts' share; idle GPUs are the site's), the same
integration, so the sums agree with the books to rounding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from kraft.cluster.state import ClusterState
from kraft.energy.books import EnergyInputs, hour_grid, hourly_factors, hourly_kwh
from kraft.energy.power import gpu_power
from kraft.record import Record


@dataclass
class SiteHours:
    """One site over the period's hours, kWh per hour (facility = IT x PUE)."""

    name: str
    grid_zone: str
    first_hour: int  # index on the record's clock of the first hour below
    facility_kwh: np.ndarray  # the whole site: every GPU's idle draw included
    carbon_intensity_g_per_kwh: np.ndarray  # location-based, the zone's hour
    market_g_per_kwh: float  # the site's contract factor
    cfe_supply_kwh: np.ndarray  # PPAs and on-site generation in the hour
    grid_cfe_share: float
    tenant_facility_kwh: dict[str, np.ndarray]  # each tenant's jobs at this site

    @property
    def cfe_share(self) -> np.ndarray:
        """The share of the site's consumption in each hour that carbon-free supply covers:
        the contracted supply first, the grid's carbon-free share of the rest (NaN where the
        site drew nothing)."""
        use = self.facility_kwh
        covered = np.minimum(use, self.cfe_supply_kwh)
        cfe = covered + self.grid_cfe_share * (use - covered)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(use > 0, cfe / use, np.nan)


def calendar_origin(record: Record, inputs: EnergyInputs) -> datetime:
    """The date of the record's t = 0: its UTC year's start live; the twin's clock (origin 0)
    starts at the signal year's."""
    if record.origin_s:
        return datetime.fromtimestamp(record.origin_s, UTC)
    return datetime(inputs.signal_year, 1, 1, tzinfo=UTC)


def site_hours(record: Record, cluster: ClusterState, inputs: EnergyInputs,
               period: tuple[float, float]) -> list[SiteHours]:
    t0, t1 = period
    hours = int(t1 // 3600) + 2
    first, last = int(t0 // 3600), int(np.ceil(t1 / 3600))
    grid = hour_grid(t0, t1, hours)
    pools = cluster.pools
    fleet = cluster.fleet
    power = [gpu_power(p.site, p.model, inputs.utilization) for p in pools]
    pool_site = np.array([fleet.sites.index(p.site) for p in pools], dtype=np.int64)
    busy_w = np.array([w.busy_w for w in power])
    idle_w = np.array([w.idle_w for w in power])
    pool_ix = record.pool.astype(np.int64)
    start = np.clip(record.start_s.astype(np.float64), t0, t1)
    end = np.clip(record.end_s.astype(np.float64), t0, t1)
    seg_busy_w = record.gpus * busy_w[pool_ix]
    seg_extra_w = record.gpus * (busy_w - idle_w)[pool_ix]
    seg_site = pool_site[pool_ix]
    seg_tenant = np.array(record.job_tenant, dtype=object)[record.job] if len(record) else \
        np.array([], dtype=object)
    out = []
    for s_i, site in enumerate(fleet.sites):
        pue_h, ci_h, _ = hourly_factors(site, inputs.sites[site.name], hours)
        m = seg_site == s_i
        idle = sum(p.total_gpus * idle_w[p.index] for p in pools if pool_site[p.index] == s_i)
        it_h = idle * np.diff(grid) / 3.6e6 + hourly_kwh(start[m], end[m], seg_extra_w[m], grid)
        tenants = {}
        for name in sorted(set(seg_tenant[m])):
            k = m & (seg_tenant == name)
            tenants[str(name)] = (hourly_kwh(start[k], end[k], seg_busy_w[k], grid)
                                  * pue_h)[first:last]
        c = site.contract
        supply_kw = (c.ppa_mw + c.onsite_mw) * 1e3
        out.append(SiteHours(
            site.name, site.grid_zone, first, (it_h * pue_h)[first:last], ci_h[first:last],
            c.market_g_per_kwh, supply_kw * np.diff(grid)[first:last] / 3600.0,
            c.grid_cfe_share, tenants))
    return out
