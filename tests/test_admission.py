"""Admission rejects what can never run, with a reason; quotas hold jobs back, with a reason."""

from helpers import fleet, jobs, run, tenant

from kraft.cluster.state import ClusterState
from kraft.sched.job import Job, JobState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler

TWO_SITES = fleet(nodes=2, gpus=4, sites=[
    {"name": "oslo", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO1"},
    {"name": "austin", "country": "US", "jurisdiction": "US", "grid_zone": "US-TEX-ERCO"}])


def scheduler(*tenants):
    return Scheduler(ClusterState(TWO_SITES), tenants, make_policy("fifo"))


def test_rejections_say_why():
    eu = tenant("eu", residency={"jurisdictions": ["EEA"]})
    ch = tenant("ch", residency={"countries": ["CH"]})
    capped = tenant("capped", quota_gpus=4)
    s = scheduler(eu, ch, capped)
    cases = [
        (Job(0, eu, 16, 0, 10), "larger than any allowed pool (largest: 8 H100-SXM at oslo)"),
        (Job(1, ch, 1, 0, 10), "residency country=CH of tenant 'ch': no site"),
        (Job(2, eu, 1, 0, 10, gpu_model="B200"), "has B200 GPUs"),
        (Job(3, eu, 1, 0, 10, gpu_model="H900"), "unknown GPU model 'H900'"),
        (Job(4, capped, 8, 0, 10), "exceeds tenant quota 4"),
    ]
    for job, why in cases:
        decision = s.submit(job, 0.0)
        assert decision is not None and decision.kind == "reject"
        assert job.state is JobState.REJECTED
        assert why in job.reason, job.reason
    ok = Job(5, eu, 8, 0, 10)
    assert s.submit(ok, 0.0) is None and ok.state is JobState.WAITING


def test_residency_keeps_jobs_home_even_when_home_is_full():
    eu = tenant("eu", residency={"jurisdictions": ["EEA"]})
    js = jobs([(0, 8, 100, "eu"), (1, 8, 100, "eu")], {"eu": eu})
    run(TWO_SITES, js, "fifo")
    assert all(j.pool.site.name == "oslo" for j in js)
    assert js[1].first_start_s == 100  # waited for oslo although austin stood idle


def test_quota_holds_a_tenant_back_but_not_others():
    capped = tenant("capped", quota_gpus=4)
    free = tenant("free")
    s = scheduler(capped, free)
    a, b, c = Job(0, capped, 4, 0, 100), Job(1, capped, 2, 0, 100), Job(2, free, 4, 0, 100)
    for j in (a, b, c):
        s.submit(j, 0.0)
    started = {d.job.id for d in s.cycle(0.0) if d.kind == "start"}
    assert started == {0, 2}
    assert b.state is JobState.WAITING
    assert b.reason == "waiting: tenant quota 4/4 GPUs in use"
