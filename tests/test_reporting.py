"""The regulatory reports (docs/reporting.md) on a hand-built record whose every figure is
worked out below: EED fields, both scope-2 bases, the carbon-free share of each hour, the
FLOP of a run; then through the CLI, the API (a tenant sees only its own) and a browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from typer.testing import CliRunner

from kraft.cli import app as kraft_app
from kraft.cluster.state import ClusterState
from kraft.control.api import add_tenant, create_app
from kraft.control.auth import ensure_operator_token
from kraft.control.service import ControlPlane
from kraft.control.store import JobRow, make_engine, migrate, sessions
from kraft.energy.books import EnergyInputs, SiteSignals
from kraft.exec.null import NullExecutor
from kraft.record import ENDED, Record
from kraft.reporting import make
from kraft.reporting.pages import write
from kraft.reporting.sitefile import SiteFile
from kraft.reporting.sources import Source
from kraft.signals.series import HourlySeries
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec

# PUE 1.2 flat, no host overhead: a busy H100 draws 700 W, an idle one 70 W (catalog).
COOL = {"pue_free": 1.2, "pue_hot": 1.2}
FLEET = FleetSpec.model_validate({"name": "oracle", "sites": [
    {"name": "oslo", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO1",
     "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 40, "host_overhead_share": 0,
     "cooling": {**COOL, "wue_l_per_kwh": 0.5}, "heat_reuse_share": 0.1,
     # market: 0.5 x 24 + 0.5 x 100 = 62 g/kWh; 5 kWh of PPA in every hour
     "contract": {"renewable_share": 0.5, "contract_g_per_kwh": 24,
                  "residual_mix_g_per_kwh": 100, "ppa_mw": 0.005, "grid_cfe_share": 0.5},
     "pods": [{"name": "pod", "nodes": [{"count": 1, "gpus": 8, "model": "H100-SXM"}]}]},
    {"name": "frankfurt", "country": "DE", "jurisdiction": "EEA", "grid_zone": "DE",
     "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 40, "host_overhead_share": 0,
     "cooling": COOL, "contract": {"renewable_share": 0, "residual_mix_g_per_kwh": 400},
     "pods": [{"name": "pod", "nodes": [{"count": 1, "gpus": 8, "model": "H100-SXM"}]}]}]})


def series(first: list[float]) -> HourlySeries:
    values = np.zeros(8784)
    values[:len(first)] = first
    return HourlySeries("carbon", "t", 2024, values, "g/kWh", "test")


INPUTS = EnergyInputs({"oslo": SiteSignals(series([10, 20, 30]), flat_price_eur_per_mwh=40),
                       "frankfurt": SiteSignals(series([300, 400, 500]),
                                                flat_price_eur_per_mwh=40)})
CLUSTER = ClusterState(FLEET)
OSLO, FRA = (next(p.index for p in CLUSTER.pools if p.site.name == n)
             for n in ("oslo", "frankfurt"))
# acme: 4 GPUs at oslo, hours 0-1; beta: 4 at oslo, hours 1-2, and 8 at frankfurt, hour 0.
RECORD = Record(job=np.array([0, 1, 2]), attempt=np.array([1, 1, 1]),
                pool=np.array([OSLO, OSLO, FRA]), gpus=np.array([4, 4, 8]),
                start_s=np.array([0.0, 3600.0, 0.0]), end_s=np.array([7200.0, 10800.0, 3600.0]),
                ended=np.full(3, ENDED["succeeded"], np.int8),
                job_tenant=["acme", "beta", "beta"], job_tier=["on-demand"] * 3,
                job_name=["acme-pretrain-1", "beta-a", "beta-b"], end_of_record_s=10800.0,
                job_ids=[1, 2, 3])
SOURCE = Source(RECORD, CLUSTER, INPUTS, (0.0, 10800.0), 2024, "three hours")
SITE_FILE = SiteFile.model_validate({
    "operator": {"name": "Fjord Compute AS", "organisation_number": "999 888 777"},
    "sites": {"oslo": {"water_input_m3": 1.0, "subscribed_power_mw": 0.8,
                       "commissioned": "2025-01-15", "services": ["AI training"],
                       "renewable": {"guarantees_of_origin_mwh": 0.002, "ppa_mwh": 0.010}}}})


def test_scope_2_both_bases_and_the_hourly_carbon_free_share():
    report = make.tenant(SOURCE)["tenants"]
    # Oslo's facility kWh by hour: 1.2 x (8 x 0.07 idle + 0.63 per busy GPU): 3.696, 6.72,
    # 3.696. The PPA's 5 kWh covers hours 0 and 2; in hour 1 the grid's 0.5 covers half of
    # the 1.72 left: (5 + 0.86) / 6.72.
    h1 = 5.86 / 6.72
    acme, beta = report["acme"], report["beta"]
    assert acme["hourly"]["oslo"]["cfe_share"] == pytest.approx([1.0, h1, 1.0])
    assert acme["hourly"]["oslo"]["energy_kwh"] == pytest.approx([3.36, 3.36, 0.0])
    [row] = acme["rows"]
    assert row["month"] == "2024-01" and row["site"] == "oslo"
    assert row["energy_kwh"] == pytest.approx(6.72)  # 4 x 0.7 kW x 2 h x 1.2
    assert row["carbon_location_kg"] == pytest.approx((3.36 * 10 + 3.36 * 20) / 1e3)
    assert row["carbon_market_kg"] == pytest.approx(6.72 * 62 / 1e3)
    assert acme["totals"]["cfe_score"] == pytest.approx((3.36 + 3.36 * h1) / 6.72)
    by_site = {r["site"]: r for r in beta["rows"]}
    assert by_site["oslo"]["carbon_location_kg"] == pytest.approx((3.36 * 20 + 3.36 * 30) / 1e3)
    assert by_site["frankfurt"]["energy_kwh"] == pytest.approx(6.72)
    assert by_site["frankfurt"]["carbon_location_kg"] == pytest.approx(6.72 * 300 / 1e3)
    assert by_site["frankfurt"]["carbon_market_kg"] == pytest.approx(6.72 * 400 / 1e3)
    assert by_site["frankfurt"]["cfe_score"] == 0  # no PPA, the grid's share not given
    t = beta["totals"]
    assert t["energy_kwh"] == pytest.approx(13.44)
    assert t["carbon_location_kg"] == pytest.approx(0.168 + 2.016)
    assert t["carbon_market_kg"] == pytest.approx(6.72 * 0.062 + 2.688)
    assert t["cfe_score"] == pytest.approx((3.36 * h1 + 3.36) / 13.44)
    assert set(make.tenant(SOURCE, only="acme")["tenants"]) == {"acme"}


def test_eed_fields_with_their_sources():
    sites = make.eed(SOURCE, SITE_FILE)["sites"]
    oslo = {k: v for k, v in sites["oslo"]["fields"].items()}
    assert oslo["it_energy"]["value"] == pytest.approx(3.08 + 5.6 + 3.08)
    assert oslo["total_energy"]["value"] == pytest.approx(1.2 * 11.76)
    assert oslo["pue"]["value"] == pytest.approx(1.2) and oslo["pue"]["source"] == "modelled"
    assert oslo["installed_it_power"]["value"] == pytest.approx(5.6)  # 8 x 700 W
    assert not sites["oslo"]["must_report"]  # under 500 kW
    assert oslo["water_input"] == {"value": 1.0, "unit": "m3", "source": "operator",
                                   "ref": "2024/1364 Annex II"}
    assert oslo["wue"]["value"] == pytest.approx(1000 / 11.76)
    assert oslo["waste_heat_reused"]["value"] == pytest.approx(0.1 * 14.112)
    assert oslo["waste_heat_reused"]["source"] == "modelled"
    assert oslo["erf"]["value"] == pytest.approx(0.1)
    assert oslo["renewable_guarantees_of_origin"]["value"] == pytest.approx(2.0)
    assert oslo["renewable_ppa"]["value"] == pytest.approx(10.0)
    assert oslo["ref"]["value"] == pytest.approx(12 / 14.112)
    assert oslo["total_floor_area"]["source"] == "not given"
    assert oslo["operator"]["value"] == "Fjord Compute AS"
    # frankfurt has no site-file entry: water from WUE 0 (modelled), no renewables
    fra = sites["frankfurt"]["fields"]
    assert fra["water_input"]["source"] == "modelled" and fra["ref"]["value"] == 0
    # without the site file, Oslo's renewables come from its contract: 50 % of 14.112 kWh,
    # all within the PPA's 5 kWh x 3 h
    derived = make.eed(SOURCE, SiteFile())["sites"]["oslo"]["fields"]
    assert derived["renewable_ppa"]["value"] == pytest.approx(7.056)
    assert derived["renewable_guarantees_of_origin"]["value"] == pytest.approx(0)
    assert derived["renewable_ppa"]["source"] == "modelled"


def test_ai_act_flop_and_the_systemic_risk_line():
    r = make.ai_act(SOURCE, "acme", "acme-pretrain-*")
    assert r["training_compute_flop"] == pytest.approx(4 * 7200 * 989e12 * 0.4)
    assert r["gpu_hours"] == 8 and r["training_time_h"] == 2
    assert r["energy_facility_kwh"] == pytest.approx(6.72)
    assert r["notices"] == [] and "modelled" in r["energy_source"]
    with pytest.raises(ValueError, match="ran no job named"):
        make.ai_act(SOURCE, "beta", "acme-*")  # another tenant's run is not beta's
    # 16,384 H100 for 54 days (Llama 3 405B's scale): 3.0e25 FLOP, past 10^25
    big = Record(job=np.array([0]), attempt=np.array([1]), pool=np.array([OSLO]),
                 gpus=np.array([16384]), start_s=np.array([0.0]),
                 end_s=np.array([54 * 86400.0]), ended=np.array([ENDED["running"]], np.int8),
                 job_tenant=["lab"], job_tier=["reserved"], job_name=["405b"],
                 end_of_record_s=54 * 86400.0)
    r = make.ai_act(Source(big, CLUSTER, INPUTS, (0, 54 * 86400.0), 2024, ""), "lab", "405b")
    assert r["training_compute_flop"] == pytest.approx(16384 * 54 * 86400 * 989e12 * 0.4)
    assert r["still_running"] and "Art. 51(2)" in r["notices"][0]


def test_nkom_record_for_norwegian_sites():
    r = make.nkom(CLUSTER, SITE_FILE)
    assert set(r["sites"]) == {"oslo"}  # frankfurt is not in Norway
    oslo = r["sites"]["oslo"]
    assert oslo["must_register"]  # 0.8 MW subscribed, from 0.5 MW
    f = oslo["fields"]
    assert f["organisation_number"]["value"] == "999 888 777"
    assert f["installed_it_power"]["value"] == pytest.approx(0.0056)
    assert f["start_date"]["value"] == "2025-01-15"
    assert f["address"]["source"] == "not given"


def test_report_files_open_in_a_browser_without_errors(tmp_path):
    from browser import chrome, console_errors

    reports = [make.eed(SOURCE, SITE_FILE), make.tenant(SOURCE),
               make.ai_act(SOURCE, "acme", "acme-*"), make.nkom(CLUSTER, SITE_FILE)]
    for report in reports:
        json_path, csv_path, html_path = write(report, tmp_path)
        assert json.loads(json_path.read_text())["report"] == report["report"]
        assert len(csv_path.read_text().splitlines()) > 2
    driver = chrome()
    try:
        for name in ("eed", "tenant", "ai-act", "nkom"):
            driver.get((tmp_path / f"{name}.html").as_uri())
            assert driver.find_element("tag name", "h1").text, name
            assert driver.find_elements("tag name", "table"), name
            assert console_errors(driver) == [], name
        driver.get((tmp_path / "tenant.html").as_uri())
        assert "24/7 carbon-free energy score 93.6%" in driver.page_source  # acme's
    finally:
        driver.quit()


def test_site_file_errors_name_the_file_and_the_field(tmp_path):
    from kraft.reporting.sitefile import load_site_file
    from kraft.spec.load import SpecError

    bad = tmp_path / "sites.yaml"
    bad.write_text("sites:\n  oslo: {total_floor_area_m2: -5}\n")
    with pytest.raises(SpecError, match="(?s)sites.yaml.*sites.oslo.total_floor_area_m2"):
        load_site_file(bad, FLEET)
    bad.write_text("sites:\n  bergen: {}\n")
    with pytest.raises(SpecError, match="no such site.*allowed: oslo, frankfurt"):
        load_site_file(bad, FLEET)


def _live(db_url, tmp_path):
    """Two tenants' jobs run live (on the null executor, an injected clock) in March 2026."""
    from datetime import UTC, datetime

    engine = make_engine(db_url)
    migrate(engine)
    home = tmp_path / "home"
    op = ensure_operator_token(home)
    with sessions(engine)() as s:
        tokens = {n: add_tenant(s, TenantSpec(name=n)).token for n in ("acme", "beta")}
        s.commit()

    class Clock:
        t = datetime(2026, 3, 2, tzinfo=UTC).timestamp()

        def __call__(self):
            return self.t
    clock = Clock()
    plane = ControlPlane(FLEET, engine, NullExecutor(clock), clock=clock)
    plane.recover(clock.t)
    with sessions(engine)() as s:
        for tenant, name in (("acme", "acme-pretrain-1"), ("beta", "beta-a")):
            spec = JobSpec(tenant=tenant, name=name, gpus=4, command=["sleep", "7200"])
            s.execute(insert(JobRow.__table__), [dict(
                tenant=tenant, name=name, state="pending", spec=spec.model_dump(mode="json"),
                submitted_s=clock.t)])
        s.commit()
    plane.step(clock.t)
    clock.t += 7200
    plane.step(clock.t)
    return engine, home, op, tokens


def test_a_tenant_reads_only_its_own_reports_over_the_api(db_url, tmp_path):
    engine, home, op, tokens = _live(db_url, tmp_path)
    app = create_app(engine, home, fleet=FLEET)

    def auth(token):
        return {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:
        acme = c.get("/v1/reports/tenant", params={"period": 2026},
                     headers=auth(tokens["acme"])).json()
        beta = c.get("/v1/reports/tenant", params={"period": 2026},
                     headers=auth(tokens["beta"])).json()
        everyone = c.get("/admin/reports/tenant", params={"period": 2026},
                         headers=auth(op)).json()
        as_tenant = c.get("/admin/reports/tenant", headers=auth(tokens["acme"]))
        own_run = c.get("/v1/reports/ai-act", params={"run": "acme-*"},
                        headers=auth(tokens["acme"]))
        their_run = c.get("/v1/reports/ai-act", params={"run": "acme-*"},
                          headers=auth(tokens["beta"]))
        empty_year = c.get("/v1/reports/tenant", params={"period": 2020},
                           headers=auth(tokens["acme"]))
        bad_year = c.get("/v1/reports/tenant", params={"period": "soon"},
                         headers=auth(tokens["acme"]))
    assert set(acme["tenants"]) == {"acme"} and set(beta["tenants"]) == {"beta"}
    assert set(everyone["tenants"]) == {"acme", "beta"}
    [row] = acme["tenants"]["acme"]["rows"]
    assert row["month"] == "2026-03" and row["energy_kwh"] == pytest.approx(4 * 0.7 * 2 * 1.2)
    assert as_tenant.status_code in (401, 403)
    assert own_run.status_code == 200
    assert own_run.json()["training_compute_flop"] == pytest.approx(4 * 7200 * 989e12 * 0.4)
    assert their_run.status_code == 404 and "ran no job named" in their_run.json()["detail"]
    assert empty_year.status_code == 404 and "2020" in empty_year.json()["detail"]
    assert bad_year.status_code == 422
    engine.dispose()


def test_cli_reports_from_the_database_and_from_a_results_folder(db_url, tmp_path):
    engine, home, op, tokens = _live(db_url, tmp_path)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(json.dumps(FLEET.model_dump(mode="json", by_alias=True)))
    db = ["--db", db_url]
    runner = CliRunner()
    r = runner.invoke(kraft_app, ["report", "tenant", *db, "--fleet", str(fleet_file),
                                  "--period", "2026", "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["tenants"]) == {"acme", "beta"}
    out = tmp_path / "reports"
    r = runner.invoke(kraft_app, ["report", "ai-act", *db, "--fleet", str(fleet_file),
                                  "--tenant", "acme", "--run", "acme-*", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "1.139e+19 FLOP" in r.output and (out / "ai-act.html").exists()
    engine.dispose()
    # the twin: a results folder
    fed = tmp_path / "fed"
    r = runner.invoke(kraft_app, ["simulate", "--fleet", "nordic-federation", "--load", "0.8",
                                  "--out", str(fed), "--no-breakdown"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(kraft_app, ["report", "tenant", "--results", str(fed), "--tenant", "lab",
                                  "--json"])
    assert r.exit_code == 0, r.output
    lab = json.loads(r.output)["tenants"]["lab"]
    assert 0 < lab["totals"]["cfe_score"] < 1  # narvik's 0.5 MW PPA covers most hours
    r = runner.invoke(kraft_app, ["report", "eed", "--results", str(fed), "--site-file",
                                  str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "missing.yaml" in r.output
    r = runner.invoke(kraft_app, ["report", "tenant", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "kraft simulate --out" in r.output
