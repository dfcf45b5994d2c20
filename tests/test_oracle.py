"""Hand-computed schedules: a few jobs on two 4-GPU nodes, exact completion times.

Jobs (submit s, GPUs, run s): J0 (0, 4, 100), J1 (0, 8, 50), J2 (1, 2, 10), J3 (2, 4, 20).
Checkpoints every second and no restart cost, so a preempted job keeps all its work. The
derivation of each expected list is written out beside it.
"""

import pytest
from helpers import fleet, jct, jobs, run, tenant

ROWS = [(0, 4, 100), (0, 8, 50), (1, 2, 10), (2, 4, 20)]


def make():
    return jobs(ROWS, checkpoint_interval_s=1.0, restart_cost_s=0.0)


def test_fifo():
    # J0 starts at 0; J1 (8 GPUs) blocks the queue until J0 ends at 100, runs to 150;
    # then J2 (150-160) and J3 (150-170) start together.
    js = make()
    run(fleet(), js, "fifo")
    assert jct(js) == [100, 150, 159, 168]
    assert [j.first_start_s for j in js] == [0, 100, 150, 150]


@pytest.mark.parametrize("policy", ["backfill", "fairshare"])
def test_easy_backfill(policy):
    # J1 is the head with a reservation at t=100 (when J0 ends). J2 (ends 11 <= 100) and
    # J3 (starts 11 when J2 frees room, ends 31 <= 100) are backfilled; J1 still starts at 100.
    # One tenant, so fair share orders exactly as backfill does.
    js = make()
    run(fleet(), js, policy)
    assert jct(js) == [100, 150, 10, 29]
    assert [j.first_start_s for j in js] == [0, 100, 1, 11]


def test_backfill_never_delays_the_reserved_head():
    # J2 would run 1..201 on the 4 free GPUs: it ends after J1's reservation at 100 and J1
    # needs every GPU, so it must wait for J1.
    js = jobs([(0, 4, 100), (0, 8, 50), (1, 2, 200)])
    run(fleet(), js, "backfill")
    assert [j.first_start_s for j in js] == [0, 100, 150]


def test_srtf_preempts_for_shorter_jobs():
    # t=0: J1 (50 s) then J0 (100 s) by remaining time; J1 takes all 8 GPUs.
    # t=1: J2 (10 s) preempts J1 (ends 50 > 1+10), takes node0:2; J0 fits on node1 (1..101).
    # t=2: J3 (20 s) preempts J0 (ends 101 > 22), runs 2..22 on node1; J0 has 99 s left.
    # t=11: J2 ends; J0 restarts on node0 (11..110); J1 (49 s left) cannot empty 2 nodes.
    # t=22: J3 ends; J1 preempts J0 (12 s done, 88 left), runs 22..71; J0 runs 71..159.
    js = make()
    run(fleet(), js, "srtf")
    assert jct(js) == [159, 71, 10, 20]
    assert [j.preemptions for j in js] == [2, 1, 0, 0]
    assert sum(j.lost_gpu_s for j in js) == 0  # checkpoints every second


def test_las_demotes_and_preempts():
    # Threshold 100 GPU-s. J0 (4 GPUs) is demoted at t=25. J2 runs 1..11, J3 11..31.
    # At 31 J1 (queue 0) preempts J0 (queue 1) and runs 31..81; J0 resumes with 69 s: 81..150.
    js = make()
    run(fleet(), js, "las", thresholds_gpu_s=(100.0,))
    assert jct(js) == [150, 81, 10, 29]
    assert [j.preemptions for j in js] == [1, 0, 0, 0]


def test_reservation_preempts_spot_and_charges_lost_work():
    # S (spot) holds all 8 GPUs from 0. L (lab, 4 reserved GPUs) arrives at 10 and preempts S
    # at once. S checkpoints every 6 s: it keeps 6 s, loses 4 s x 8 GPUs = 32 GPU-s, and
    # restarts at 30 (when L ends) paying 5 s: 30 + 5 + 94 = 129.
    ts = {"lab": tenant("lab", tier="reserved", reserved_gpus=4), "spot": tenant("spot", tier="spot")}
    js = jobs([(0, 8, 100, "spot"), (10, 4, 20, "lab")], ts,
              checkpoint_interval_s=6.0, restart_cost_s=5.0)
    run(fleet(), js, "fifo", tenants=ts)
    spot, lab = js
    assert lab.first_start_s == 10 and lab.guaranteed
    assert spot.preemptions == 1
    assert spot.lost_gpu_s == 32
    assert spot.finish_s == 129


def test_fairshare_serves_the_lighter_tenant_first():
    # Tenant a ran 0..100 on all 8 GPUs; at 100 both a and b have one 8-GPU job waiting
    # (a's submitted first). Fair share starts b's job first, FIFO would start a's.
    ts = {"a": tenant("a"), "b": tenant("b")}
    rows = [(0, 8, 100, "a"), (1, 8, 10, "a"), (2, 8, 10, "b")]
    fs = jobs(rows, ts)
    run(fleet(), fs, "fairshare", tenants=ts)
    assert [j.first_start_s for j in fs] == [0, 110, 100]
    ts2 = {"a": tenant("a"), "b": tenant("b")}
    ff = jobs(rows, ts2)
    run(fleet(), ff, "fifo", tenants=ts2)
    assert [j.first_start_s for j in ff] == [0, 100, 110]


def test_waiting_counts_requeues_and_utilisation_has_an_arrival_window():
    """SRTF above: J0 waits 0..1, runs 1..2, requeued 2..11, runs 11..22, requeued 22..71,
    runs 71..159: 1 s to its first start, 59 s waiting in all. J1 runs 0..1, requeued 1..22,
    runs 22..71: 0 s to first start, 21 s waiting. Allocated GPUs over the arrival window
    (0..2 s): 8 GPUs then 6, 14 GPU-s of 16; over the run, 900 GPU-s of 8 x 159."""
    from kraft.cluster.state import ClusterState
    from kraft.sched.policy import make_policy
    from kraft.sched.scheduler import Scheduler
    from kraft.sim.engine import Simulator
    from kraft.sim.metrics import summarize

    js = make()
    sched = Scheduler(ClusterState(fleet()), [js[0].tenant], make_policy("srtf"))
    outcome = Simulator(sched, js).run()
    res = summarize(outcome, fleet="test", fleet_gpus=8, trace="t", policy="srtf", seed=0,
                    load_target=None, load_offered=0.0, time_factor=1.0, dropped_rows={})
    assert [j.finish_s - j.submit_s - j.executed_s for j in js] == [59, 21, 0, 0]
    assert res["overall"]["queue_delay_s"]["mean"] == pytest.approx((1 + 0 + 0 + 0) / 4)
    assert res["overall"]["waiting_total_s"]["mean"] == pytest.approx((59 + 21) / 4)
    assert res["utilization_arrival_window"] == pytest.approx(14 / 16, abs=1e-3)
    assert res["utilization"] == pytest.approx(900 / (8 * 159), abs=1e-3)
