"""Norway's data-centre registration (Nkom's register, required from 2025 of data centres
with at least 0.5 MW; the Electronic Communications Act's rules on data-centre services):
the record per Norwegian site, from the fleet spec and the operator's site file."""

from __future__ import annotations

from kraft.cluster.state import ClusterState
from kraft.reporting.fields import field, installed_it_power_kw
from kraft.reporting.sitefile import SiteFile

REGISTRATION_THRESHOLD_MW = 0.5
REF = "Nkom data-centre registration"


def nkom_record(cluster: ClusterState, site_file: SiteFile) -> dict:
    installed = installed_it_power_kw(cluster)
    org = site_file.operator
    gpus = {}
    for p in cluster.pools:
        gpus[p.site.name] = gpus.get(p.site.name, 0) + p.total_gpus
    sites = {}
    for site in cluster.fleet.sites:
        if site.country != "NO":
            continue
        facts = site_file.sites.get(site.name)
        subscribed = facts.subscribed_power_mw if facts else None
        power_mw = subscribed if subscribed is not None else installed[site.name] / 1e3
        sites[site.name] = {
            "must_register": power_mw >= REGISTRATION_THRESHOLD_MW,
            "fields": {
                "enterprise": field(org.name if org else None, "", "operator", REF),
                "organisation_number": field(org.organisation_number if org else None, "",
                                             "operator", REF),
                "contact_name": field(org.contact_name if org else None, "", "operator", REF),
                "contact_email": field(org.contact_email if org else None, "", "operator",
                                       REF),
                "contact_phone": field(org.contact_phone if org else None, "", "operator",
                                       REF),
                "site": field(site.name, "", "operator", REF),
                "address": field(facts.address if facts else None, "", "operator", REF),
                "municipality": field(facts.municipality if facts else None, "", "operator",
                                      REF),
                "grid_zone": field(site.grid_zone, "", "operator", REF),
                "start_date": field(facts.commissioned.isoformat()
                                    if facts and facts.commissioned else None, "",
                                    "operator", REF),
                "subscribed_power": field(subscribed, "MW", "operator", REF),
                "it_power_budget": field(site.it_power_budget_mw, "MW", "operator", REF),
                "installed_it_power": field(round(installed[site.name] / 1e3, 6), "MW",
                                            "modelled", REF),
                "gpus": field(gpus.get(site.name, 0), "", "operator", REF),
                "services": field(list(facts.services) if facts and facts.services else None,
                                  "", "operator", REF),
            }}
    return {"report": "nkom", "fleet": cluster.fleet.name, "sites": sites}
