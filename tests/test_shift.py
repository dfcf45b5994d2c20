"""Temporal shifting: a flexible job waits for the cleanest hours of its window, no longer."""

import numpy as np
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
