"""A tenant's figures for its own sustainability report (CSRD ESRS E1-5/E1-6; for the tenant
Kraft's site is a purchased service, scope 3, and these are the site's scope-2 figures for
its share): energy per month and site, location-based and market-based kgCO2e side by side,
never added, and hourly matching, the share of each hour's consumption that carbon-free
supply covered at the site (a 24/7 carbon-free energy score)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from kraft.reporting.hours import SiteHours


def month_labels(origin: datetime, first_hour: int, n: int) -> np.ndarray:
    start = np.datetime64(origin.replace(tzinfo=None) + timedelta(hours=first_hour), "h")
    return (start + np.arange(n)).astype("datetime64[M]").astype(str)


def tenant_report(sites: list[SiteHours], origin: datetime, period_label: str,
                  only: str | None = None) -> dict:
    """Every tenant that ran in the period (or `only`): rows per month and site, totals, and
    the hourly series per site."""
    names = sorted({t for s in sites for t in s.tenant_facility_kwh})
    if only is not None:
        names = [n for n in names if n == only]
    out = {}
    for name in names:
        rows, hourly = [], {}
        for s in sites:
            kwh = s.tenant_facility_kwh.get(name)
            if kwh is None:
                continue
            share = np.nan_to_num(s.cfe_share)
            months = month_labels(origin, s.first_hour, len(kwh))
            for month in dict.fromkeys(months):
                k = months == month
                used = float(kwh[k].sum())
                if used == 0:
                    continue
                cfe = float((kwh[k] * share[k]).sum())
                rows.append({
                    "month": str(month), "site": s.name, "grid_zone": s.grid_zone,
                    "energy_kwh": _r(used),
                    "carbon_location_kg": _r((kwh[k] * s.carbon_intensity_g_per_kwh[k]).sum()
                                             / 1e3),
                    "carbon_market_kg": _r(used * s.market_g_per_kwh / 1e3),
                    "cfe_kwh": _r(cfe), "cfe_score": _r(cfe / used)})
            start = origin + timedelta(hours=s.first_hour)
            hourly[s.name] = {"first_hour_utc": start.isoformat(),
                              "energy_kwh": np.round(kwh, 6).tolist(),
                              "cfe_share": [None if np.isnan(v) else round(float(v), 6)
                                            for v in s.cfe_share]}
        energy = sum(r["energy_kwh"] for r in rows)
        cfe = sum(r["cfe_kwh"] for r in rows)
        out[name] = {
            "rows": rows,
            "totals": {"energy_kwh": _r(energy),
                       "carbon_location_kg": _r(sum(r["carbon_location_kg"] for r in rows)),
                       "carbon_market_kg": _r(sum(r["carbon_market_kg"] for r in rows)),
                       "cfe_kwh": _r(cfe), "cfe_score": _r(cfe / energy) if energy else None},
            "hourly": hourly}
    return {"report": "tenant", "period": period_label, "tenants": out,
            "bases": {
                "energy": "facility energy of the tenant's jobs: their GPUs' and hosts' power "
                          "(modelled from measured run times) x the site's PUE of the hour",
                "carbon_location": "x the grid zone's hourly intensity (Electricity Maps, "
                                   "life-cycle)",
                "carbon_market": "x the site's contractual emission factor (GHG Protocol "
                                 "scope 2, market-based)",
                "cfe": "each hour: PPA and on-site supply cover the site's consumption first, "
                       "the grid's carbon-free share (as the fleet gives it) the rest; a "
                       "tenant's share is the site's"}}


def _r(x: float) -> float:
    return round(float(x), 6)
