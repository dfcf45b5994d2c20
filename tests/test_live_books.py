"""The live books against a hand computation, through the API and the CLI (`kraft job`,
`kraft usage`, `kraft admin usage`), as tests/test_energy.py checks the twin's."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import insert
from typer.testing import CliRunner

from kraft.cli import app as kraft_app
from kraft.control.api import add_tenant, create_app
from kraft.control.auth import ensure_operator_token
from kraft.control.service import ControlPlane
from kraft.control.store import JobRow, make_engine, migrate, sessions
from kraft.exec.null import NullExecutor
from kraft.signals.series import load_series
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec

# 15 C outside (no weather series): 5 K past a 10 C free-cooling limit on a 10 K ramp from
# 1.1 to 1.6 -> PUE 1.35. Half the energy covered at 0 g by contract, the rest at 400 g:
# 200 g/kWh market-based. A flat 50 EUR/MWh.
FLEET = FleetSpec.model_validate({"name": "oracle", "sites": [{
    "name": "oslo", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO1",
    "it_power_budget_mw": 1, "flat_price_eur_per_mwh": 50,
    "cooling": {"pue_free": 1.1, "free_cooling_max_c": 10, "pue_hot": 1.6, "hot_c": 20},
    "contract": {"renewable_share": 0.5, "contract_g_per_kwh": 0,
                 "residual_mix_g_per_kwh": 400},
    "pods": [{"name": "pod", "nodes": [{"count": 2, "gpus": 8, "model": "H100-SXM"}]}]}]})
START = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # hour 1,440 of the year


class Clock:
    t = START

    def __call__(self):
        return self.t


def expected() -> dict:
    # 8 H100 at 700 W rated, hosts +80 %: 10,080 W for 2 h = 20.16 kWh IT; x 1.35 = 27.216 kWh
    # facility. Location: the NO-NO1 2024 series at hours 1,440 and 1,441 (one hour each).
    ci = load_series("carbon", "NO-NO1").values[1440:1442]
    return {"gpu_hours": 16.0, "it_kwh": 20.16, "facility_kwh": 27.216,
            "carbon_location_kg": 10.08 * 1.35 * float(np.sum(ci)) / 1e3,
            "carbon_market_kg": 27.216 * 0.2, "energy_cost_eur": 27.216 * 50 / 1e3,
            "gpu_hour_charge_eur": 16 * 3.0}  # on-demand: 3 EUR per GPU-hour


@pytest.fixture
def served(db_url, tmp_path):
    engine = make_engine(db_url)
    migrate(engine)
    home = tmp_path / "home"
    op = ensure_operator_token(home)
    with sessions(engine)() as s:
        token = add_tenant(s, TenantSpec(name="acme")).token
        add_tenant(s, TenantSpec(name="other"))
        s.commit()
    clock = Clock()
    plane = ControlPlane(FLEET, engine, NullExecutor(clock), clock=clock)
    plane.recover(clock.t)
    with sessions(engine)() as s:  # a 2-hour job of 8 GPUs, submitted at 00:00
        spec = JobSpec(tenant="acme", name="train", gpus=8, command=["sleep", "7200"])
        s.execute(insert(JobRow.__table__), [dict(tenant="acme", name="train", state="pending",
                                                  spec=spec.model_dump(mode="json"),
                                                  submitted_s=clock.t)])
        s.commit()
    plane.step(clock.t)
    clock.t = START + 7200
    plane.step(clock.t)
    app = create_app(engine, home, fleet=FLEET)
    yield app, token, op
    engine.dispose()


def test_live_books_match_the_hand_computation(served):
    app, token, op = served
    want = expected()
    with TestClient(app) as c:
        auth = {"Authorization": f"Bearer {token}"}
        jobs = c.get("/v1/jobs", headers=auth).json()
        assert [j["state"] for j in jobs] == ["succeeded"]
        [attempt] = c.get(f"/v1/jobs/{jobs[0]['id']}/attempts", headers=auth).json()
        assert attempt["site"] == "oslo" and attempt["gpus"] == 8
        assert attempt["ended"] == "succeeded" and attempt["start"].startswith("2026-03-02T00")
        usage = c.get("/v1/usage", params={"since": "2026-03-01", "until": "2026-03-03"},
                      headers=auth).json()
        by_site = c.get("/v1/usage", params={"since": "2026-03-01", "until": "2026-03-03",
                                             "by": "site"}, headers=auth).json()
        by_day = c.get("/v1/usage", params={"since": "2026-03-01", "until": "2026-03-03",
                                            "by": "day"}, headers=auth).json()
        admin = c.get("/admin/usage", params={"since": "2026-03-02", "until": "2026-03-02T02:00"},
                      headers={"Authorization": f"Bearer {op}"}).json()
        bad = c.get("/v1/usage", params={"since": "yesterday"}, headers=auth)
        tenant_admin = c.get("/admin/usage", headers=auth)
    for key, value in want.items():
        assert attempt[key] == pytest.approx(value, rel=1e-9, abs=1e-6), key
        assert usage["totals"][key] == pytest.approx(value, rel=1e-9, abs=1e-6), key
        assert by_site["rows"][0][key] == pytest.approx(value, rel=1e-9, abs=1e-6), key
    assert usage["rows"][0]["tenant"] == "acme" and by_site["rows"][0]["site"] == "oslo"
    # 1 March, when nothing ran, is left out (as sreport leaves out empty periods)
    assert [r["day"] for r in by_day["rows"]] == ["2026-03-02"]
    assert by_day["rows"][0]["it_kwh"] == pytest.approx(20.16)
    assert "sites" not in usage  # a tenant sees its own figures, never the site's
    # the operator: every tenant, and the site's own books (16 GPUs, 8 of them idle 2 h)
    idle_kwh = 8 * 70 * 1.8 * 2 / 1e3
    assert admin["sites"]["oslo"]["idle_it_kwh"] == pytest.approx(idle_kwh)
    assert admin["sites"]["oslo"]["it_kwh"] == pytest.approx(20.16 + idle_kwh)
    assert admin["sites"]["oslo"]["pue"] == pytest.approx(1.35)
    assert bad.status_code == 422 and "ISO date" in bad.json()["detail"]
    assert tenant_admin.status_code in (401, 403)



def test_tenant_totals_count_each_attempt_once_as_it_settles(db_url):
    """The /metrics counters keep the sums of settled attempts and recount only the rest:
    at every moment they equal the books over the whole record, and a settled attempt is
    never counted twice."""
    from kraft.control.usage import SETTLED_S, LiveBooks

    engine = make_engine(db_url)
    migrate(engine)
    with sessions(engine)() as s:
        add_tenant(s, TenantSpec(name="acme"))
        add_tenant(s, TenantSpec(name="other"))
        s.commit()
    clock = Clock()
    plane = ControlPlane(FLEET, engine, NullExecutor(clock), clock=clock)
    plane.recover(clock.t)

    def submit(tenant, seconds):
        spec = JobSpec(tenant=tenant, name="j", gpus=8, command=["sleep", str(seconds)])
        with sessions(engine)() as s:
            s.execute(insert(JobRow.__table__), [dict(
                tenant=tenant, name="j", state="pending", spec=spec.model_dump(mode="json"),
                submitted_s=clock.t)])
            s.commit()
        plane.step(clock.t)

    live = LiveBooks(FLEET)
    submit("acme", 3600)
    submit("other", 36000)  # runs on past every check below
    seen = []
    for dt in (1800, 3600, 3600 + SETTLED_S + 1, 3600 + SETTLED_S + 1, 4200, 7200,
               7200 + 3 * SETTLED_S):
        clock.t = START + dt
        plane.step(clock.t)
        if dt == 3600:
            submit("acme", 600)  # a second attempt of acme's, settling later
        with sessions(engine)() as s:
            totals = live.tenant_totals(s, clock.t)
            whole = LiveBooks(FLEET).usage(s, START, clock.t, "tenant")
        want = {r["tenant"]: r for r in whole["rows"]}
        assert totals.keys() == want.keys()
        for tenant, row in totals.items():
            for key in ("gpu_hours", "it_kwh", "carbon_location_kg", "energy_cost_eur"):
                assert row[key] == pytest.approx(want[tenant][key], rel=1e-6, abs=1e-6), (
                    dt, tenant, key)
        seen.append(totals["acme"]["gpu_hours"])
    assert seen[0] == pytest.approx(4.0) and seen[-1] == pytest.approx(8 + 8 * 600 / 3600)
    assert live._settled_until_s > START + 3600  # the first attempt is held, not recounted
    engine.dispose()

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kraft_job_and_kraft_usage_print_the_books(served, tmp_path, monkeypatch):
    app, token, op = served
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        env = {"KRAFT_SERVER": f"http://127.0.0.1:{port}", "KRAFT_TOKEN": token,
               "COLUMNS": "250"}
        runner = CliRunner()
        want = expected()
        shown = runner.invoke(kraft_app, ["job", "1"], env=env)
        assert shown.exit_code == 0, shown.output
        assert "attempts and their books" in shown.output
        assert f"{want['carbon_location_kg']:.4g}" in shown.output  # below 1 kg: 4 digits
        assert f"{want['carbon_market_kg']:,.2f}" in shown.output
        out = runner.invoke(kraft_app, ["usage", "--since", "2026-03-01", "--until",
                                        "2026-03-03", "-o", "json"], env=env)
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        assert data["totals"]["facility_kwh"] == pytest.approx(want["facility_kwh"])
        csv_out = runner.invoke(kraft_app, ["usage", "--since", "2026-03-01", "--by", "job",
                                            "-o", "csv", "--export",
                                            str(tmp_path / "bill.parquet")], env=env)
        assert csv_out.exit_code == 0, csv_out.output
        header, row = csv_out.output.strip().splitlines()
        assert header.startswith("job,gpu_hours,it_kwh") and row.startswith("1,16.0,20.16")
        import pyarrow.parquet as pq

        bill = pq.read_table(tmp_path / "bill.parquet").to_pylist()
        assert bill[0]["job"] == "1" and bill[0]["gpu_hour_charge_eur"] == pytest.approx(48.0)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
