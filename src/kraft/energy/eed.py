"""EU Energy Efficiency Directive (2023/1791, Art. 12; Delegated Regulation 2024/1364) data
centre indicators, from a run's per-site books. Definitions (EN 50600-4-x), per site and
period:

- PUE  = total facility energy / IT energy                       (EN 50600-4-2)
- WUE  = site water use (L) / IT energy (kWh)                     (EN 50600-4-9)
- REF  = renewable energy (by contract: PPA, guarantees of origin) / total facility energy
                                                                  (EN 50600-4-3)
- ERF  = energy reused outside the data centre (heat) / total facility energy (EN 50600-4-6)
"""

from __future__ import annotations


def eed_indicators(results: dict, fleet_sites: dict[str, dict]) -> dict[str, dict]:
    """`fleet_sites`: site name -> {"renewable_share": ...} from the fleet spec."""
    out = {}
    for name, g in results["energy"]["per_site"].items():
        it, fac = g["it_kwh"], g["facility_kwh"]
        out[name] = {
            "grid_zone": g["grid_zone"],
            "it_kwh": it,
            "facility_kwh": fac,
            "pue": fac / it if it else None,
            "wue_l_per_kwh": g["water_l"] / it if it else None,
            "ref": fleet_sites[name]["renewable_share"],
            "erf": g["reused_heat_kwh"] / fac if fac else None,
            "carbon_location_kg": g["carbon_location_kg"],
            "carbon_market_kg": g["carbon_market_kg"],
        }
    return out
