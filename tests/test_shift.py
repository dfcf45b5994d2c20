"""Temporal shifting: a flexible job waits for the cleanest hours of its window, no longer."""

import numpy as np
import pytest
from helpers import fleet, jobs, tenant

from kraft.cluster.state import ClusterState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler
from kraft.sched.shift import SignalShift
from kraft.signals.series import HourlyIntegral
from kraft.sim.engine import Simulator

# hours 0-3: 100 g/kWh, hours 4-5: 10 g/kWh, then 100 again
CARBON = np.array([100.0] * 4 + [10.0] * 2 + [100.0] * 18)


def simulate(rows, window_s, carbon=CARBON):
    ts = {"a": tenant("a")}
    js = jobs(rows, ts, flex_window_s=window_s)
    shift = SignalShift({"s1": carbon})
    sched = Scheduler(ClusterState(fleet()), ts.values(), make_policy("backfill"), shift=shift)
    Simulator(sched, js).run()
    return js


def test_integral_wraps_and_averages():
    f = HourlyIntegral(np.array([1.0, 3.0]))
    assert f.mean(np.array([0.0]), np.array([7200.0]))[0] == 2.0
    assert f.mean(np.array([3600.0]), np.array([10800.0]))[0] == 2.0  # wraps to hour 0
    assert f.mean(np.array([1800.0]), np.array([5400.0]))[0] == 2.0


def test_flexible_job_moves_to_the_clean_hours():
    # a 2-hour job submitted at 0:30 with a 6-hour window: best start is 4:00 (10 g/kWh)
    js = simulate([(1800, 1, 7200)], window_s=6 * 3600)
    assert js[0].first_start_s == 4 * 3600


def test_window_bounds_the_wait():
    # a 3-hour window (starts 0:30 to 3:30; candidates: at once and on the hour) ends before
    # the clean hours: 3:00 is best (hour 3 at 100, hour 4 at 10: mean 55 g/kWh)
    js = simulate([(1800, 1, 7200)], window_s=3 * 3600)
    assert js[0].first_start_s == 3 * 3600


def test_rigid_jobs_are_not_moved():
    js = simulate([(1800, 1, 7200)], window_s=0)
    assert js[0].first_start_s == 1800


def test_forecasts_know_only_the_past(tmp_path):
    from kraft.signals.forecast import Oracle, RecentDays, make_forecast

    # two days of history: day 1 flat 100 but 10 at 03:00; day 2 flat 50
    values = np.array([100.0] * 3 + [10.0] + [100.0] * 20 + [50.0] * 24 + [200.0] * 24)
    now = 48 * 3600.0  # the start of day 3, whose true values (200) only its first hour shows
    assert Oracle().window(values, now, 4).tolist() == [200.0] * 4
    f = RecentDays(2).window(values, now, 5)
    assert f[0] == 200.0  # this hour is observed
    assert f[1:].tolist() == [75.0, 75.0, 30.0, 75.0]  # means of the same hour on days 1 and 2
    shift = SignalShift({"s1": values}, forecast=RecentDays(2))
    ts = {"a": tenant("a")}
    [job] = jobs([(now, 1, 3600)], ts, flex_window_s=6 * 3600)
    job.pools = tuple(ClusterState(fleet()).pools)
    start, why = shift.plan(job, now)
    assert start == now + 3 * 3600 and "recent-days-2 forecast" in why  # 03:00: 30 expected
    # issued forecasts from a file: the latest issued at or before now answers
    path = tmp_path / "fc.csv"
    path.write_text("issued_at,timestamp,value\n"
                    "2024-01-03T00:00,2024-01-03T00:00,1\n2024-01-03T00:00,2024-01-03T01:00,2\n"
                    "2024-01-03T01:00,2024-01-03T01:00,9\n2024-01-03T01:00,2024-01-03T02:00,3\n")
    fc = make_forecast(f"file:{path}")
    assert fc.window(values, now, 3).tolist() == [200.0, 2.0, 2.0]  # issued at 00:00
    assert fc.window(values, now + 3600, 3).tolist() == [200.0, 3.0, 3.0]  # issued at 01:00
    with pytest.raises(ValueError, match="needs columns issued_at, timestamp, value"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        make_forecast(f"file:{tmp_path / 'bad.csv'}")
