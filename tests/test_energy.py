"""Hand-computed books: energy, carbon on both bases, cost, compute; and the budget filter."""

import numpy as np
import pytest
from helpers import fleet, jobs, run, tenant

from kraft.catalog import CATALOG
from kraft.cluster.state import ClusterState
from kraft.energy.books import EnergyInputs, SiteSignals, books, per_job
from kraft.energy.models import pue
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler
from kraft.signals.series import HourlySeries
from kraft.sim.engine import Simulator
from kraft.spec.models import CoolingSpec, FleetSpec


def series(kind, values, unit="x"):
    return HourlySeries(kind, "test", 2024, np.asarray(values, dtype=float), unit, "test")


def one_site(**site):
    spec = fleet(nodes=1, gpus=8).model_dump(by_alias=True)
    spec["sites"][0].update(site)
    return FleetSpec.model_validate(spec)


def books_of(fleet_spec, rows, signals, tier="reserved", **job_kw):
    ts = {"a": tenant("a", tier=tier, reserved_gpus=8 if tier == "reserved" else 0)}
    js = jobs(rows, ts, **job_kw)
    sched = Scheduler(ClusterState(fleet_spec), ts.values(), make_policy("fifo"))
    outcome = Simulator(sched, js).run()
    record = outcome.segments.record(outcome.jobs, sched.cluster.node_name, outcome.end_s)
    section, cols = books(record, sched.cluster, EnergyInputs({"s1": signals}))
    return section, per_job(record, cols)


def test_two_hour_job_oracle():
    # 8 H100 at rated 700 W for 2 h; hosts add 80 %: 8 x 700 x 1.8 = 10,080 W -> 20.16 kWh IT.
    # 10 C outside: free cooling, PUE 1.1 -> 22.176 kWh facility.
    # Location: 30 g/kWh -> 0.66528 kg. Market: half covered at 0 g, half at 400 g -> 200 g/kWh
    # -> 4.4352 kg. Energy: 50 EUR/MWh -> 1.1088 EUR. GPU-hours: 16 x 2.0 EUR (reserved) = 32.
    # Compute: 16 GPU-h x 3600 s x 989e12 FLOP/s x 0.4 MFU = 2.278656e19 FLOP.
    f = one_site(contract={"renewable_share": 0.5, "contract_g_per_kwh": 0,
                           "residual_mix_g_per_kwh": 400}, flat_price_eur_per_mwh=50)
    sig = SiteSignals(series("carbon", [30] * 24), None, 50.0, series("temperature", [10] * 24))
    section, per_job = books_of(f, [(0, 8, 7200)], sig)
    j = section["jobs"]
    assert j["it_kwh"] == pytest.approx(20.16)
    assert j["facility_kwh"] == pytest.approx(22.176)
    assert j["carbon_location_kg"] == pytest.approx(0.66528)
    assert j["carbon_market_kg"] == pytest.approx(4.4352)
    assert j["energy_cost_eur"] == pytest.approx(1.1088)
    assert j["gpu_hour_charge_eur"] == pytest.approx(32.0)
    assert j["flop"] == pytest.approx(2.278656e19)
    assert section["per_site"]["s1"]["idle_it_kwh"] == pytest.approx(0.0, abs=1e-9)
    assert not section["ai_act_flags"]


def test_carbon_follows_the_hourly_intensity():
    # 4 GPUs from 0:30 to 2:30 under 10, 20, 30 g/kWh: IT power 4 x 700 x 1.8 = 5,040 W,
    # PUE 1.1 (no weather: 15 C): 5.544 kW x (0.5 h x 10 + 1 h x 20 + 0.5 h x 30) = 221.76 g.
    f = one_site(flat_price_eur_per_mwh=0)
    sig = SiteSignals(series("carbon", [10, 20, 30] + [0] * 21), None, 0.0, None)
    section, _ = books_of(f, [(1800, 4, 7200)], sig)
    assert section["jobs"]["carbon_location_kg"] == pytest.approx(0.22176)
    site = section["per_site"]["s1"]
    # the site also burns idle power (70 W x 1.8 per GPU) on GPUs nobody holds: 4 GPUs over
    # the whole run (0 to 9,000 s) and the other 4 until the job starts at 1,800 s.
    assert site["idle_it_kwh"] == pytest.approx(4 * 70 * 1.8 * (9000 + 1800) / 3.6e6)
    assert site["it_kwh"] == pytest.approx(site["idle_it_kwh"] + section["jobs"]["it_kwh"])


def test_pue_curve():
    c = CoolingSpec(pue_free=1.1, free_cooling_max_c=18, pue_hot=1.4, hot_c=38)
    assert pue(c, np.array([-5.0, 18.0, 28.0, 38.0, 45.0])).tolist() == pytest.approx(
        [1.1, 1.1, 1.25, 1.4, 1.4])


def test_ai_act_flag():
    # 1e25 FLOP at 0.4 x 989 TFLOP/s needs 2.53e10 GPU-s: 8 GPUs for ~100 years; use B200s
    # and a long job instead: 8 x 2.25e15 x 0.4 x 2e8 s = 1.44e24 -> not flagged; 2e9 s is.
    f = FleetSpec.model_validate({**one_site(flat_price_eur_per_mwh=0).model_dump(by_alias=True),
                                  "sites": [{**one_site(flat_price_eur_per_mwh=0).sites[0].model_dump(by_alias=True),
                                             "pods": [{"name": "p", "nodes": [{"count": 1, "gpus": 8, "model": "B200"}]}]}]})
    sig = SiteSignals(series("carbon", [0] * 24), None, 0.0, None)
    section, _ = books_of(f, [(0, 8, 2e8), (0, 8, 2e9)], sig, tier="on-demand")
    assert [flag["job"] for flag in section["ai_act_flags"]] == ["job-1"]
    assert CATALOG["B200"].bf16_flops == 2.25e15


def test_budget_holds_jobs_back_and_says_why():
    # 8 H100: idle 8 x 70 x 1.8 = 1,008 W; each busy GPU adds 630 x 1.8 = 1,134 W.
    # A 6 kW budget leaves 4,992 W: 4 busy GPUs (4,536 W) fit, 5 do not.
    f = one_site(it_power_budget_mw=0.006, flat_price_eur_per_mwh=0)
    js = jobs([(0, 4, 100), (0, 1, 100), (0, 5, 10)])
    sched = run(f, js, "backfill")
    assert js[0].first_start_s == 0 and js[1].first_start_s == 100
    assert js[2].state.value == "rejected" and "power budget" in js[2].reason
    assert sched.cluster.site_power[0].headroom_w == pytest.approx(6000 - 1008)


def test_user_series_in_the_canonical_format(tmp_path):
    from kraft.signals.series import SignalError, load_series

    path = tmp_path / "my-grid.csv"
    # two samples in 2024, UTC; the gap between them is filled forward
    path.write_text("timestamp,value\n2024-01-01T00:00:00Z,50\n2024-01-01T03:00:00Z,20\n")
    s = load_series("carbon", str(path), 2024)
    assert s.values[:5].tolist() == [50, 50, 50, 20, 20]
    assert len(s.values) == 8784 and s.filled_hours == 8782
    with pytest.raises(SignalError, match="not bundled"):
        load_series("carbon", "XX-NOWHERE", 2024)
    bad = tmp_path / "bad.csv"
    bad.write_text("when,g\n1,2\n")
    with pytest.raises(SignalError, match="needs columns 'timestamp'"):
        load_series("carbon", str(bad), 2024)


def test_power_cap_slows_jobs_saves_power_and_fits_more_under_the_budget():
    # H100: 700 W rated, 70 W idle. Capped at 385 W the dynamic power halves (630 -> 315 W),
    # so a compute-bound job runs 2^(1/3) = 1.26x longer. Budget 8 kW on 8 GPUs: idle
    # 8 x 70 x 1.8 = 1,008 W; uncapped each busy GPU adds 1,134 W (6 fit), capped 567 W (all 8).
    from kraft.energy.models import cap_slowdown

    assert cap_slowdown(CATALOG["H100-SXM"], 385) == pytest.approx(2 ** (1 / 3))
    assert cap_slowdown(CATALOG["H100-SXM"], None) == 1.0
    capped = one_site(it_power_budget_mw=0.008, gpu_power_cap_w=385, flat_price_eur_per_mwh=0)
    js = jobs([(0, 8, 3600)])
    run(capped, js, "fifo")
    assert js[0].state.value == "done"
    assert js[0].finish_s == pytest.approx(3600 * 2 ** (1 / 3))
    uncapped = one_site(it_power_budget_mw=0.008, flat_price_eur_per_mwh=0)
    js = jobs([(0, 8, 3600)])
    run(uncapped, js, "fifo")
    assert js[0].state.value == "rejected" and "power budget" in js[0].reason
    sig = SiteSignals(series("carbon", [0] * 24), None, 0.0, None)
    section, _ = books_of(capped, [(0, 8, 3600)], sig)
    # 8 x 385 W x 1.8 for 1.26 h
    assert section["jobs"]["it_kwh"] == pytest.approx(8 * 385 * 1.8 * 3600 * 2 ** (1 / 3) / 3.6e6)
    with pytest.raises(ValueError, match="not above"):
        one_site(gpu_power_cap_w=50)
