"""Energy, carbon, cost and compute books of what ran, per segment, job, tenant, tier, site, hour.

Every figure comes from the record (`kraft.record.Record`: who ran on which pool from when to
when), the same for the twin and the live service, and hourly signals; this module knows
neither body. A site's hourly series x (PUE, PUE x carbon intensity, PUE x price) is
integrated over a segment in O(1) with a prefix sum, so the books cost O(segments + hours).

Attribution: a job is charged its GPUs' power (idle part included) and its hosts' overhead
(`kraft.energy.power`); idle power of unallocated GPUs is the site's, reported as
`idle_it_kwh`. Location-based carbon = facility energy x the zone's hourly intensity
(life-cycle basis). Market-based carbon = facility energy x the site's contractual factor.
The two are separate keys and no figure adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kraft.catalog import CATALOG
from kraft.cluster.state import ClusterState
from kraft.energy.models import AI_ACT_SYSTEMIC_FLOP, DEFAULT_MFU
from kraft.energy.power import DEFAULT_OUTDOOR_C, gpu_power, site_pue
from kraft.record import Record
from kraft.signals.series import HourlyIntegral, HourlySeries
from kraft.spec.models import FleetSpec, Tier

J_PER_KWH = 3.6e6
SEGMENT_COLUMNS = ("it_kwh", "facility_kwh", "carbon_location_kg", "carbon_market_kg",
                   "energy_cost_eur", "gpu_hours", "gpu_hour_charge_eur", "flop")


@dataclass
class SiteSignals:
    carbon: HourlySeries
    price: HourlySeries | None = None  # EUR/MWh
    flat_price_eur_per_mwh: float | None = None
    temperature: HourlySeries | None = None


@dataclass
class EnergyInputs:
    sites: dict[str, SiteSignals]
    signal_year: int = 2024
    utilization: float = 1.0  # busy GPUs at rated power: an upper bound
    mfu: float = DEFAULT_MFU
    sources: list[str] = field(default_factory=list)


def _hourly(series: HourlySeries | None, hours: int, constant: float) -> np.ndarray:
    if series is None:
        return np.full(hours, constant)
    return series.hourly(np.arange(hours))


def hourly_factors(site, sig: SiteSignals, hours: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A site's PUE, carbon intensity and price for each of `hours` hours."""
    pue_h = site_pue(site, _hourly(sig.temperature, hours, DEFAULT_OUTDOOR_C))
    ci_h = _hourly(sig.carbon, hours, 0.0)
    price_h = _hourly(sig.price, hours, sig.flat_price_eur_per_mwh or 0.0)
    return pue_h, ci_h, price_h


def hour_grid(t0: float, t1: float, hours: int) -> np.ndarray:
    """The hours' edges, clipped to the books' period [t0, t1): the first and last hours may
    be partial."""
    return np.clip(np.arange(hours + 1) * 3600.0, t0, t1)


def hourly_kwh(start: np.ndarray, end: np.ndarray, power_w: np.ndarray,
               grid: np.ndarray) -> np.ndarray:
    """Energy in each interval of `grid` of segments drawing `power_w` from `start` to `end`:
    the summed power as a step function, integrated exactly, in O(n log n)."""
    if not len(start):
        return np.zeros(len(grid) - 1)
    t = np.concatenate([start, end])
    dp = np.concatenate([power_w, -power_w])
    order = np.argsort(t, kind="stable")
    t, level = t[order], np.cumsum(dp[order])
    energy_j = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])
    return np.diff(np.interp(grid, t, energy_j, left=0.0, right=energy_j[-1])) / J_PER_KWH


def books(record: Record, cluster: ClusterState, inputs: EnergyInputs,
          period: tuple[float, float] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The books of `record` over `period` ([t0, t1) on the record's clock; default: from 0
    to the record's end). Segments are clipped to the period. Returns (the `energy` section of
    results.json, one array per SEGMENT_COLUMNS entry, aligned with the record's segments)."""
    fleet = cluster.fleet
    t0, t1 = period if period is not None else (0.0, record.end_of_record_s)
    pool_ix = record.pool.astype(np.int64)
    start = np.clip(record.start_s.astype(np.float64), t0, t1)
    end = np.clip(record.end_s.astype(np.float64), t0, t1)
    hours = int(t1 // 3600) + 2
    gpus = record.gpus.astype(np.float64)

    pools = cluster.pools
    power = [gpu_power(p.site, p.model, inputs.utilization) for p in pools]
    site_of_pool = np.array([fleet.sites.index(p.site) for p in pools], dtype=np.int64)
    busy_w = np.array([w.busy_w for w in power])
    idle_w = np.array([w.idle_w for w in power])
    peak_flops = np.array([CATALOG[p.model].bf16_flops for p in pools])

    seg_power_w = gpus * busy_w[pool_ix]
    seg_extra_w = gpus * (busy_w - idle_w)[pool_ix]
    dur = end - start
    seg_site = site_of_pool[pool_ix]

    cols = {k: np.zeros(len(record)) for k in SEGMENT_COLUMNS}
    per_site: dict[str, dict] = {}
    hourly_out: dict[str, dict] = {}
    first_hour = int(t0 // 3600)
    for s_i, site in enumerate(fleet.sites):
        sig = inputs.sites[site.name]
        pue_h, ci_h, price_h = hourly_factors(site, sig, hours)
        market_g = site.contract.market_g_per_kwh
        m = seg_site == s_i
        p_w, a, b = seg_power_w[m], start[m], end[m]
        cols["it_kwh"][m] = p_w * (b - a) / J_PER_KWH
        cols["facility_kwh"][m] = p_w * HourlyIntegral(pue_h).over(a, b) / J_PER_KWH
        cols["carbon_location_kg"][m] = (p_w * HourlyIntegral(pue_h * ci_h).over(a, b)
                                         / J_PER_KWH / 1e3)
        cols["carbon_market_kg"][m] = cols["facility_kwh"][m] * market_g / 1e3
        cols["energy_cost_eur"][m] = (p_w * HourlyIntegral(pue_h * price_h).over(a, b)
                                      / J_PER_KWH / 1e3)

        # The site hour by hour: idle draw of every GPU plus the busy extra of running ones.
        site_idle_w = sum(len(p.nodes) * p.gpus_per_node * idle_w[p.index]
                          for p in pools if site_of_pool[p.index] == s_i)
        grid = hour_grid(t0, t1, hours)
        it_h = site_idle_w * np.diff(grid) / J_PER_KWH + hourly_kwh(a, b, seg_extra_w[m], grid)
        fac_h = it_h * pue_h
        allocated_it = cols["it_kwh"][m].sum()
        total_it = float(it_h.sum())
        per_site[site.name] = {
            "grid_zone": site.grid_zone,
            "it_kwh": _r(total_it),
            "idle_it_kwh": _r(total_it - allocated_it),
            "facility_kwh": _r(fac_h.sum()),
            "pue": _r(fac_h.sum() / total_it if total_it else 0.0),
            "carbon_location_kg": _r((fac_h * ci_h).sum() / 1e3),
            "carbon_market_kg": _r(fac_h.sum() * market_g / 1e3),
            "energy_cost_eur": _r((fac_h * price_h).sum() / 1e3),
            "water_l": _r(total_it * site.cooling.wue_l_per_kwh),
            "reused_heat_kwh": _r(fac_h.sum() * site.heat_reuse_share),
            "peak_it_mw": _r(it_h.max() / 1e3),
            "budget_mw": site.it_power_budget_mw,
            "price_source": (sig.price.source if sig.price else
                             f"flat {sig.flat_price_eur_per_mwh} EUR/MWh (given in the fleet)"),
        }
        last = int(np.ceil(t1 / 3600))
        hourly_out[site.name] = {
            "first_hour": first_hour,
            "it_kwh": np.round(it_h[first_hour:last], 3).tolist(),
            "carbon_location_kg": np.round(fac_h * ci_h / 1e3, 3)[first_hour:last].tolist(),
            "carbon_intensity_g_per_kwh": np.round(ci_h[first_hour:last], 2).tolist(),
            "pue": np.round(pue_h[first_hour:last], 4).tolist()}

    cols["gpu_hours"] = gpus * dur / 3600
    cols["flop"] = gpus * dur * peak_flops[pool_ix] * inputs.mfu
    tiers, tier_code = np.unique(np.array(record.job_tier, dtype=object).astype(str),
                                 return_inverse=True)
    price = np.array([fleet.gpu_hour_price_eur.for_tier(Tier(t)) for t in tiers])
    cols["gpu_hour_charge_eur"] = cols["gpu_hours"] * price[tier_code][record.job] \
        if len(tiers) else cols["gpu_hours"] * 0.0

    def group(labels: list[str]) -> dict:
        names, codes = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
        seg_codes = codes[record.job] if len(record) else codes[:0]
        sums = {c: np.bincount(seg_codes, weights=v, minlength=len(names))
                for c, v in cols.items()}
        return {str(n): {c: _r(sums[c][i]) for c in sorted(sums)} for i, n in enumerate(names)}

    job_flop = np.bincount(record.job, weights=cols["flop"], minlength=record.n_jobs)
    flags = [{"tenant": record.job_tenant[k], "job": record.job_name[k],
              "flop": float(job_flop[k])}
             for k in np.flatnonzero(job_flop > AI_ACT_SYSTEMIC_FLOP)]
    totals = {col: _r(v.sum()) for col, v in cols.items()}
    section = {
        "signal_year": inputs.signal_year,
        "gpu_utilization": inputs.utilization,
        "mfu": inputs.mfu,
        "carbon_basis": {"location": "grid zone hourly intensity, life-cycle (Electricity Maps)",
                         "market": "site contract factor (GHG Protocol Scope 2 market-based)"},
        "period_s": [t0, t1],
        "jobs": totals,
        "per_tier": group(record.job_tier) if record.n_jobs else {},
        "per_tenant": group(record.job_tenant) if record.n_jobs else {},
        "per_site": per_site,
        "ai_act_flags": flags,
        "hourly": hourly_out,
    }
    return section, cols


def per_job(record: Record, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Segment columns summed per job (for jobs.parquet)."""
    return {k: np.bincount(record.job, weights=v, minlength=record.n_jobs)
            for k, v in cols.items()}


def _r(x: float) -> float:
    return round(float(x), 6)


def inputs_for(fleet: FleetSpec, year: int = 2024, data_dir=None, utilization: float = 1.0,
               mfu: float = DEFAULT_MFU) -> EnergyInputs:
    """Load each site's series. A site without a price series must give a flat tariff:
    Kraft never makes one up."""
    from kraft.signals.series import SignalError, load_series

    sites = {}
    for site in fleet.sites:
        carbon = load_series("carbon", site.grid_zone, year, data_dir)
        if site.price_zone is not None:
            price = load_series("price", site.price_zone, year, data_dir)
        elif site.flat_price_eur_per_mwh is None:
            raise SignalError(f"site {site.name}: no price: give price_zone (a day-ahead "
                              f"series) or flat_price_eur_per_mwh in the fleet spec")
        else:
            price = None
        temperature = (load_series("temperature", site.weather, year, data_dir)
                       if site.weather else None)
        sites[site.name] = SiteSignals(carbon, price, site.flat_price_eur_per_mwh, temperature)
    return EnergyInputs(sites, year, utilization, mfu)


def signal_by_site(inputs: EnergyInputs, by: str, hours: int | None = None) -> dict:
    """Each site's hourly carbon intensity or price, for the scheduler's shifting."""
    out = {}
    for name, sig in inputs.sites.items():
        if by == "carbon":
            out[name] = sig.carbon.values
        elif by == "price":
            if sig.price is None:
                raise ValueError(f"site {name} has a flat tariff: shifting by price gains "
                                 f"nothing there")
            out[name] = sig.price.values
        else:
            raise ValueError(f"shift by {by!r}? Use carbon or price")
    return out
