"""Energy, carbon, cost and compute books of a simulation, per job, tenant, tier, site, hour.

Every figure comes from the run segments (who ran on which pool from when to when) and hourly
signals. A site's hourly series x (PUE, PUE x carbon intensity, PUE x price) is integrated over
a segment in O(1) with a prefix sum, so the books cost O(segments + hours), not O(events).

Attribution: a job is charged its GPUs' power (idle part included) and its hosts' overhead;
idle power of unallocated GPUs is the site's, reported as `idle_it_kwh`.
Location-based carbon = facility energy x the zone's hourly intensity (life-cycle basis).
Market-based carbon = facility energy x the site's contractual factor. The two are separate
keys and no figure adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kraft.catalog import CATALOG
from kraft.cluster.state import ClusterState
from kraft.energy.models import (
    AI_ACT_SYSTEMIC_FLOP,
    DEFAULT_MFU,
    capped_power_w,
    gpu_power_w,
    pue,
)
from kraft.signals.series import HourlyIntegral, HourlySeries
from kraft.sim.engine import SimOutcome
from kraft.spec.models import FleetSpec

J_PER_KWH = 3.6e6
DEFAULT_OUTDOOR_C = 15.0


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
    pue_h = pue(site.cooling, _hourly(sig.temperature, hours, DEFAULT_OUTDOOR_C))
    ci_h = _hourly(sig.carbon, hours, 0.0)
    price_h = _hourly(sig.price, hours, sig.flat_price_eur_per_mwh or 0.0)
    return pue_h, ci_h, price_h


def keep_books(outcome: SimOutcome, cluster: ClusterState, fleet: FleetSpec,
               inputs: EnergyInputs) -> tuple[dict, dict[str, np.ndarray]]:
    """Returns (the `energy` section of results.json, per-job columns for jobs.parquet)."""
    seg = outcome.segments
    jobs = outcome.jobs
    n_jobs = len(jobs)
    job_ix = np.frombuffer(seg.job, dtype=np.int64)
    pool_ix = np.frombuffer(seg.pool, dtype=np.int64)
    start = np.frombuffer(seg.start_s, dtype=np.float64)
    end = np.frombuffer(seg.end_s, dtype=np.float64)
    hours = int(max(outcome.end_s, end.max() if end.size else 0.0) // 3600) + 2
    gpus = np.array([jobs[k].gpus for k in range(n_jobs)], dtype=np.float64)[job_ix]

    pools = cluster.pools
    site_of_pool = np.array([fleet.sites.index(p.site) for p in pools], dtype=np.int64)
    host = np.array([1 + p.site.host_overhead_share for p in pools])
    busy_w = np.array([min(gpu_power_w(CATALOG[p.model], inputs.utilization),
                           capped_power_w(CATALOG[p.model], p.site.gpu_power_cap_w))
                       for p in pools])
    idle_w = np.array([CATALOG[p.model].idle_power_w for p in pools])
    peak_flops = np.array([CATALOG[p.model].bf16_flops for p in pools])

    seg_power_w = gpus * busy_w[pool_ix] * host[pool_ix]
    seg_extra_w = gpus * (busy_w - idle_w)[pool_ix] * host[pool_ix]
    dur = end - start
    seg_site = site_of_pool[pool_ix]

    cols = {k: np.zeros(len(seg_power_w)) for k in
            ("it_kwh", "facility_kwh", "carbon_location_kg", "carbon_market_kg",
             "energy_cost_eur")}
    per_site: dict[str, dict] = {}
    hourly_out: dict[str, dict] = {}
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
        site_idle_w = sum(len(p.nodes) * p.gpus_per_node * idle_w[p.index] * host[p.index]
                          for p in pools if site_of_pool[p.index] == s_i)
        # The books cover [0, end of the run): the last hour may be partial.
        grid = np.minimum(np.arange(hours + 1) * 3600.0, outcome.end_s)
        it_h = site_idle_w * np.diff(grid) / J_PER_KWH
        if m.any():
            t = np.concatenate([a, b])
            dp = np.concatenate([seg_extra_w[m], -seg_extra_w[m]])
            order = np.argsort(t, kind="stable")
            t, level = t[order], np.cumsum(dp[order])
            energy_j = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])
            cum = np.interp(grid, t, energy_j, left=0.0, right=energy_j[-1])
            it_h += np.diff(cum) / J_PER_KWH
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
        hourly_out[site.name] = {"it_kwh": np.round(it_h, 3).tolist(),
                                 "carbon_location_kg": np.round(fac_h * ci_h / 1e3, 3).tolist(),
                                 "carbon_intensity_g_per_kwh": np.round(ci_h, 2).tolist(),
                                 "pue": np.round(pue_h, 4).tolist()}

    per_job = {k: np.bincount(job_ix, weights=v, minlength=n_jobs) for k, v in cols.items()}
    per_job["flop"] = np.bincount(job_ix, weights=gpus * dur * peak_flops[pool_ix] * inputs.mfu,
                                  minlength=n_jobs)
    gpu_h = np.bincount(job_ix, weights=gpus * dur, minlength=n_jobs) / 3600
    price = np.array([fleet.gpu_hour_price_eur.for_tier(j.tenant.tier) for j in jobs])
    per_job["gpu_hour_charge_eur"] = gpu_h * price

    def group(labels: list[str]) -> dict:
        names, codes = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
        sums = {c: np.bincount(codes, weights=v, minlength=len(names)) for c, v in per_job.items()}
        return {str(n): {c: _r(sums[c][i]) for c in sorted(sums)} for i, n in enumerate(names)}

    flags = [{"tenant": jobs[k].tenant.name, "job": jobs[k].name, "flop": float(per_job["flop"][k])}
             for k in np.flatnonzero(per_job["flop"] > AI_ACT_SYSTEMIC_FLOP)]
    totals = {col: _r(v.sum()) for col, v in per_job.items()}
    section = {
        "signal_year": inputs.signal_year,
        "gpu_utilization": inputs.utilization,
        "mfu": inputs.mfu,
        "carbon_basis": {"location": "grid zone hourly intensity, life-cycle (Electricity Maps)",
                         "market": "site contract factor (GHG Protocol Scope 2 market-based)"},
        "jobs": totals,
        "per_tier": group([j.tenant.tier.value for j in jobs]),
        "per_tenant": group([j.tenant.name for j in jobs]),
        "per_site": per_site,
        "ai_act_flags": flags,
        "hourly": hourly_out,
    }
    return section, per_job


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
