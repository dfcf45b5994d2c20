"""The EU Energy Efficiency Directive's data-centre report (Directive 2023/1791 Art. 12 and
Annex VII; Delegated Regulation 2024/1364 Annexes I and II, indicators per EN 50600-4-x), per
site and reporting year, from the books' per-site section. Sites from 500 kW of installed IT
power report each year by 15 May, for the year before. Each field says where it comes from
(kraft.reporting.fields)."""

from __future__ import annotations

from kraft.cluster.state import ClusterState
from kraft.reporting.fields import field, installed_it_power_kw
from kraft.reporting.sitefile import SiteFile

REPORTING_THRESHOLD_KW = 500.0
ANNEX_I, ANNEX_II = "2024/1364 Annex I", "2024/1364 Annex II"
NOT_KNOWN = {  # asked for, and outside what a scheduler sees
    "data_traffic": "incoming and outgoing data traffic: the network's counters",
    "storage_capacity": "installed storage capacity: the storage systems' inventory",
    "server_ict_capacity": "servers' ICT capacity (SERT): the servers' test reports",
}


def eed_report(per_site: dict[str, dict], cluster: ClusterState, site_file: SiteFile,
               year: int, period_hours: float, said: str) -> dict:
    installed = installed_it_power_kw(cluster)
    owner, operator = site_file.owner, site_file.operator
    sites = {}
    for site in cluster.fleet.sites:
        g = per_site.get(site.name)
        if g is None:
            continue
        facts = site_file.sites.get(site.name)

        def fget(key: str, facts=facts):
            return getattr(facts, key) if facts else None
        it, fac = g["it_kwh"], g["facility_kwh"]
        water_m3 = fget("water_input_m3")
        water = field(water_m3, "m3", "operator", ANNEX_II) if water_m3 is not None else \
            field(g["water_l"] / 1e3, "m3", "modelled", ANNEX_II)
        heat_kwh = fget("waste_heat_reused_kwh")
        heat = field(heat_kwh, "kWh", "operator", ANNEX_II) if heat_kwh is not None else \
            field(g["reused_heat_kwh"], "kWh", "modelled", ANNEX_II)
        renewable = _renewable(site, fget("renewable"), fac, period_hours)
        total_renewable = sum(renewable[k]["value"] for k in renewable)
        fields = {
            "name": field(site.name, "", "operator", ANNEX_I),
            "owner": field(owner.name if owner else None, "", "operator", ANNEX_I),
            "operator": field(operator.name if operator else None, "", "operator", ANNEX_I),
            "start_of_operation": field(_iso(fget("commissioned")), "", "operator",
                                        ANNEX_I),
            "country": field(site.country, "", "operator", ANNEX_I),
            "municipality": field(fget("municipality"), "", "operator", ANNEX_I),
            "type": field(fget("kind"), "", "operator", ANNEX_I),
            "total_floor_area": field(fget("total_floor_area_m2"), "m2", "operator", ANNEX_I),
            "computer_room_floor_area": field(fget("computer_room_floor_area_m2"), "m2",
                                              "operator", ANNEX_I),
            "installed_it_power": field(round(installed[site.name], 3), "kW", "modelled",
                                        ANNEX_I),
            "total_energy": field(fac, "kWh", "modelled", ANNEX_II),
            "it_energy": field(it, "kWh", "modelled", ANNEX_II),
            "pue": field(fac / it if it else None, "", "modelled", "EN 50600-4-2"),
            "water_input": water,
            "potable_water": field(fget("potable_water_m3"), "m3", "operator", ANNEX_II),
            # an indicator over the modelled energy is modelled, whatever its numerator
            "wue": field(water["value"] * 1e3 / it if it else None, "L/kWh", "modelled",
                         "EN 50600-4-9"),
            "waste_heat_reused": heat,
            "waste_heat_temperature": field(fget("waste_heat_temperature_c"), "C", "operator",
                                            ANNEX_II),
            "erf": field(heat["value"] / fac if fac else None, "", "modelled",
                         "EN 50600-4-6"),
            **renewable,
            "ref": field(min(1.0, total_renewable / fac) if fac else None, "", "modelled",
                         "EN 50600-4-3"),
            "refrigerants": field([r.model_dump() for r in facts.refrigerants]
                                  if facts and facts.refrigerants else None, "kg, GWP",
                                  "operator", ANNEX_II),
        }
        sites[site.name] = {
            "must_report": installed[site.name] >= REPORTING_THRESHOLD_KW,
            "due": f"{year + 1}-05-15", "fields": fields, "not_known": NOT_KNOWN}
    return {"report": "eed", "year": year, "period": said, "sites": sites}


def _renewable(site, given, facility_kwh: float, period_hours: float) -> dict:
    """The renewable energy consumed, split by instrument: the site file's statements, else
    the fleet's contract (PPA and on-site MW over the period's hours; guarantees of origin for
    the rest of the contracted share)."""
    if given is not None:
        return {"renewable_guarantees_of_origin": field(given.guarantees_of_origin_mwh * 1e3,
                                                        "kWh", "operator", ANNEX_II),
                "renewable_ppa": field(given.ppa_mwh * 1e3, "kWh", "operator", ANNEX_II),
                "renewable_onsite": field(given.onsite_mwh * 1e3, "kWh", "operator", ANNEX_II)}
    c = site.contract
    contracted = c.renewable_share * facility_kwh
    ppa = min(contracted, c.ppa_mw * 1e3 * period_hours)
    onsite = min(contracted - ppa, c.onsite_mw * 1e3 * period_hours)
    return {"renewable_guarantees_of_origin": field(contracted - ppa - onsite, "kWh",
                                                    "modelled", ANNEX_II),
            "renewable_ppa": field(ppa, "kWh", "modelled", ANNEX_II),
            "renewable_onsite": field(onsite, "kWh", "modelled", ANNEX_II)}


def _iso(d) -> str | None:
    return d.isoformat() if d is not None else None
