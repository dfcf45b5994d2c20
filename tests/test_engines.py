"""The Slurm and Ray executors against real two-node clusters with logical GPUs (4 per node),
started by scripts/engines/{slurm,ray}-up.sh. `.ci/run` starts both and sets SLURM_CONF and
KRAFT_RAY_UP; without them each fixture starts its cluster itself when the engine is installed,
and otherwise skips loudly (in CI it fails). The same four checks run on each engine."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from test_recovery import free_port, kraft, seconds_to_gone, start_server, wait

ROOT = Path(__file__).resolve().parent.parent
RAY = "http://127.0.0.1:8265"


def _engine_missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: .ci/run installs and starts it")
    pytest.skip(f"SKIPPED: {what} is not installed (.ci/run installs it)")


def _up(script: str, state: Path, *args: str) -> None:
    up = subprocess.run(["bash", str(ROOT / f"scripts/engines/{script}-up.sh"), str(state),
                         *args], capture_output=True, text=True)
    if up.returncode != 0:  # e.g. another cluster holds the ports
        subprocess.run(["bash", str(ROOT / f"scripts/engines/{script}-down.sh"), str(state)])
        pytest.fail(f"scripts/engines/{script}-up.sh failed: {up.stdout}{up.stderr}")


@pytest.fixture(scope="module")
def slurm_cluster():
    started = None
    if not os.environ.get("SLURM_CONF"):
        if not shutil.which("slurmctld"):
            _engine_missing("Slurm (apt-get install slurm-wlm munge)")
        started = Path(tempfile.mkdtemp(prefix="kraft-slurm-"))
        _up("slurm", started)
        os.environ["SLURM_CONF"] = str(started / "slurm.conf")
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("idle") + out.stdout.count("mix") >= 2, \
        f"Slurm is not up: {out.stdout} {out.stderr}"
    yield
    if started:
        subprocess.run(["bash", str(ROOT / "scripts/engines/slurm-down.sh"), str(started)])
        del os.environ["SLURM_CONF"]


@pytest.fixture(scope="module")
def ray_cluster():
    started = None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a stray ~/.ray/auth_token turns it on
    if not os.environ.get("KRAFT_RAY_UP"):
        if importlib.util.find_spec("ray") is None:
            _engine_missing("Ray (pip install 'ray[default]', in the test extras)")
        started = Path(tempfile.mkdtemp(prefix="kraft-ray-"))  # short: Ray's socket paths
        _up("ray", started, str(Path(sys.executable).parent))
    r = httpx.get(f"{RAY}/api/version", timeout=5)
    assert r.status_code == 200, f"the Ray dashboard is not up: {r.text}"
    yield
    if started:
        subprocess.run(["bash", str(ROOT / "scripts/engines/ray-down.sh"), str(started)])


def slurm_live() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    return [n for n in out.split() if n.startswith("kraft-")]


def ray_live() -> list[str]:
    jobs = httpx.get(f"{RAY}/api/jobs/", timeout=10).json()
    return [j["submission_id"] for j in jobs if j["status"] in ("PENDING", "RUNNING")
            and (j.get("submission_id") or "").startswith("kraft-")]


def slurm_clean(names):
    if names:
        subprocess.run(["scancel", "--name", ",".join(names)])


def ray_clean(ids):
    for sid in ids:
        httpx.post(f"{RAY}/api/jobs/{sid}/stop", timeout=10)


ENGINES = {"slurm": ("slurm_cluster", "slurm-local", slurm_live, slurm_clean),
           "ray": ("ray_cluster", "ray-local", ray_live, ray_clean)}


@pytest.fixture(params=list(ENGINES))
def engine(request):
    cluster, fleet, live, clean = ENGINES[request.param]
    request.getfixturevalue(cluster)
    return request.param, fleet, live, clean


@pytest.fixture
def serve(engine, tmp_path):
    _, fleet, live, clean = engine
    # Slurm runs each job as its tenant's account with no sandbox around it: the data folder
    # must sit where those accounts may pass (as /var/lib/kraft would), not in pytest's 0700
    # folder. Jobs write their marks into their work folder (their cwd).
    top = Path(tempfile.mkdtemp(prefix="kraft-engines-"))
    top.chmod(0o711)
    home = top / "home"
    servers = []
    port = free_port()

    def tenant(name, *opts):
        out = kraft("admin", "tenant", "create", name, "--data-dir", str(home), *opts).stdout
        token = re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})

    def server(*extra):
        servers.append(start_server(home, port, None, fleet=fleet, extra=extra))
        return servers[-1]

    yield tenant, server, live, home
    for p in servers:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
    clean(live())
    shutil.rmtree(top, ignore_errors=True)


def test_gang_runs_with_distinct_gpus(serve):
    tenant, server, live, home = serve
    a = tenant("acme")
    server()
    show = ["bash", "-c", "echo rank=$RANK node=$KRAFT_NODE gpus=$CUDA_VISIBLE_DEVICES"]
    four = a.post("/v1/jobs", json={"gpus": 4, "command": show}).json()["id"]
    eight = a.post("/v1/jobs", json={"gpus": 8, "command": show}).json()["id"]
    for job_id in (four, eight):
        job = wait(a, job_id, {"succeeded", "failed"})
        assert job["state"] == "succeeded", job
    out = a.get(f"/v1/jobs/{four}/logs").text
    gpus = re.search(r"gpus=([\d,]+)", out).group(1).split(",")
    assert len(set(gpus)) == 4, out
    # (two Ray nodes on one machine share a log folder, so each line may come back twice)
    ranks = sorted(set(re.findall(r"rank=(\d) node=(\S+) gpus=([\d,]+)",
                                  a.get(f"/v1/jobs/{eight}/logs").text)))
    assert [r for r, _, _ in ranks] == ["0", "1"]  # one rank per node, where Kraft put it
    assert sorted(n for _, n, _ in ranks) == ["local/pod-n000", "local/pod-n001"]
    assert all(len(set(g.split(","))) == 4 for _, _, g in ranks)


def test_cancel_frees_the_gpus(serve):
    tenant, server, live, home = serve
    a = tenant("acme")
    server()
    job_id = a.post("/v1/jobs", json={"gpus": 8, "command": [
        "bash", "-c", "touch started-$RANK; sleep 300"]}).json()["id"]
    wait(a, job_id, {"running"})
    deadline = time.time() + 30
    # cancelled once both ranks run: a Ray driver stopped while it is still connecting can
    # leave its placement group behind (docs/engines.md, "Not yet")
    while not all((home / "homes" / "acme" / f"started-{r}").exists() for r in (0, 1)) \
            and time.time() < deadline:
        time.sleep(0.1)
    assert live(), "the engine does not hold the job"
    a.post(f"/v1/jobs/{job_id}/cancel")
    wait(a, job_id, {"cancelled"})
    while live() and time.time() < deadline:
        time.sleep(0.1)
    assert live() == [], "the engine still holds the GPUs"
    # all 8 GPUs are the engine's to give again
    again = a.post("/v1/jobs", json={"gpus": 8, "command": ["true"]}).json()["id"]
    assert wait(a, again, {"succeeded", "failed"})["state"] == "succeeded"


def test_reserved_arrival_preempts_spot(serve, tmp_path):
    tenant, server, live, home = serve
    spot = tenant("cheap", "--tier", "spot")
    lab = tenant("lab", "--tier", "reserved", "--reserved-gpus", "4")
    server()
    spot_id = spot.post("/v1/jobs", json={"gpus": 8, "command": [
        "bash", "-c", "echo $RANK >> spot-starts; sleep 3"]}).json()["id"]
    wait(spot, spot_id, {"running"})
    marks = home / "homes" / "cheap" / "spot-starts"
    deadline = time.time() + 30  # preempted once it runs (see test_cancel_frees_the_gpus)
    while len(marks.read_text().split() if marks.exists() else []) < 2 \
            and time.time() < deadline:
        time.sleep(0.1)
    lab_id = lab.post("/v1/jobs", json={"gpus": 4, "command": ["sleep", "1"]}).json()["id"]
    assert wait(lab, lab_id, {"succeeded", "failed"})["state"] == "succeeded"
    done = wait(spot, spot_id, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "succeeded" and done["attempt"] == 2
    states = [e["to_state"] for e in spot.get(f"/v1/jobs/{spot_id}/events").json()]
    assert states.count("preempted") == 1 and states[-1] == "succeeded"


def test_sigkill_of_the_control_plane_keeps_engine_jobs_once(serve, tmp_path):
    tenant, server, live, home = serve
    a = tenant("acme")
    first = server()
    mark = home / "homes" / "acme" / "starts"
    job_id = a.post("/v1/jobs", json={"gpus": 8, "command": [
        "bash", "-c", "echo start-$RANK >> starts; sleep 4"]}).json()["id"]
    wait(a, job_id, {"running"})
    deadline = time.time() + 20
    while len(mark.read_text().split() if mark.exists() else []) < 2 and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    server()
    done = wait(a, job_id, {"succeeded", "failed"}, timeout=60)
    assert done["state"] == "succeeded" and done["attempt"] == 1
    assert sorted(mark.read_text().split()) == ["start-0", "start-1"], "ran twice"
    details = [e["detail"] for e in a.get(f"/v1/jobs/{job_id}/events").json()]
    assert any("re-adopted" in d for d in details)


@pytest.mark.parametrize("engine", ["slurm"], indirect=True)  # Ray stops drivers itself
@pytest.mark.parametrize("how", ["cancel", "time limit", "preemption"])
def test_a_job_that_ignores_sigterm_is_gone_after_the_grace_period(serve, how):
    """On Slurm too: the runner (the batch script) gets SIGTERM, passes it to every process
    of the job, SIGKILLs them after Kraft's grace period; the GPUs go on only then."""
    tenant, server, live, home = serve
    cheap = tenant("cheap", "--tier", "spot")
    lab = tenant("lab", "--tier", "reserved", "--reserved-gpus", "8")
    server("--grace-s", "2")
    stubborn = ("trap '' TERM; (trap '' TERM; setsid sleep 600 & wait) & "
                "while true; do date +%s.%N > .a-$RANK && mv .a-$RANK alive-$KRAFT_ATTEMPT-$RANK; "
                "sleep 0.02; done")  # written whole: a kill between truncate and write
    limit = {"time_limit_s": 3} if how == "time limit" else {}
    job_id = cheap.post("/v1/jobs", json={"gpus": 8, "command": ["bash", "-c", stubborn],
                                          **limit}).json()["id"]
    wait(cheap, job_id, {"running"})

    def procs():  # a zombie is no process of the job (srun's helper, awaiting PID 1's reap)
        out = subprocess.run(["ps", "-u", "kraft-cheap", "-o", "pid=,stat="],
                             capture_output=True, text=True)
        return [p for p, st in (line.split() for line in out.stdout.splitlines())
                if not st.startswith("Z")]
    # both ranks at work: each has written its mark (on Slurm the job's own srun processes
    # count among the account's, so a count of processes came too early)
    marks = [home / "homes" / "cheap" / f"alive-1-{r}" for r in (0, 1)]
    deadline = time.time() + 20
    while not all(m.exists() for m in marks) and time.time() < deadline:
        time.sleep(0.05)
    assert all(m.exists() for m in marks) and len(procs()) >= 6, procs()
    if how == "cancel":
        cheap.post(f"/v1/jobs/{job_id}/cancel")
    elif how == "preemption":
        lab_id = lab.post("/v1/jobs", json={"gpus": 8, "command": [
            "bash", "-c", "date +%s.%N > started-$RANK"]}).json()["id"]
    gone_s = seconds_to_gone(cheap, job_id, procs)
    assert gone_s <= 3.0, f"{how}: alive {gone_s:.1f} s after the stop (grace 2 s)"
    if how == "preemption":
        assert wait(lab, lab_id, {"succeeded", "failed"}, timeout=60)["state"] == "succeeded"
        work = home / "homes"
        last_alive = max(float((work / "cheap" / f"alive-1-{r}").read_text()) for r in (0, 1))
        started = min(float((work / "lab" / f"started-{r}").read_text()) for r in (0, 1))
        assert started > last_alive, "the preempted job's GPUs were in use by two jobs"
        cheap.post(f"/v1/jobs/{job_id}/cancel")


@pytest.mark.parametrize("engine", list(ENGINES), indirect=True)
def test_one_status_query_per_step_for_all_running_jobs(engine, tmp_path, monkeypatch):
    """The loop asks the engine about all its running jobs at once: one squeue listing, or
    one Ray job listing, per step, however many run (was one query per job every step)."""
    name, fleet, live, clean = engine
    from kraft.control.service import ControlPlane
    from kraft.control.store import JobRow, make_engine, migrate, sessions
    from kraft.spec.load import load_fleet
    from kraft.spec.models import JobSpec, TenantSpec

    db = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(db)
    top = Path(tempfile.mkdtemp(prefix="kraft-engines-"))
    top.chmod(0o711)
    plane = ControlPlane(load_fleet(fleet), db, top / "runs", single_user=True)
    with sessions(db)() as s:
        from kraft.control.api import add_tenant

        add_tenant(s, TenantSpec(name="acme"))
        for k in range(4):
            spec = JobSpec(tenant="acme", name=f"j{k}", gpus=1, command=["sleep", "60"])
            s.add(JobRow(tenant="acme", name=f"j{k}", state="pending",
                         spec=spec.model_dump(mode="json"), submitted_s=time.time()))
        s.commit()
    plane.recover(time.time())
    calls = []
    if name == "slurm":
        import kraft.exec.slurm as slurm

        real = slurm._run
        monkeypatch.setattr(slurm, "_run", lambda argv, *a: calls.append(argv[0]) or
                            real(argv, *a))
    else:
        [ray] = [plane.executor]
        for method in ("get_job_info", "list_jobs", "get_job_status"):
            real_method = getattr(ray.client, method)
            monkeypatch.setattr(ray.client, method, lambda *a, _m=method, _r=real_method:
                                calls.append(_m) or _r(*a))
    try:
        deadline = time.time() + 60
        while len(plane.runs) < 4 and time.time() < deadline:
            plane.step()
            time.sleep(0.1)
        assert len(plane.runs) == 4, "the four jobs did not start"
        time.sleep(1.5)
        for _ in range(5):
            time.sleep(max(0.2, 5 * plane.poll_cost_s))  # past the poll's budget (see below)
            calls.clear()
            plane.step()
            queries = [c for c in calls if c in ("squeue", "get_job_info", "list_jobs",
                                                 "get_job_status")]
            assert queries == (["squeue"] if name == "slurm" else ["list_jobs"]), calls
        with sessions(db)() as s:
            assert {r.state for r in s.query(JobRow)} == {"running"}
    finally:
        monkeypatch.undo()
        with sessions(db)() as s:
            for r in s.query(JobRow):
                r.cancel_requested = True
            s.commit()
        plane.step()
        clean(live())
        db.dispose()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("engine", ["slurm"], indirect=True)
def test_slurm_reports_the_nodes_it_has_down(engine, tmp_path):
    """`scontrol update state=down` on one of the fleet's nodes: the executor reports it, by
    Kraft's name and with Slurm's reason; resumed, it is reported no more."""
    from kraft.cluster.state import ClusterState
    from kraft.exec.router import make_executor
    from kraft.spec.load import load_fleet

    ex = make_executor(ClusterState(load_fleet("slurm-local")), tmp_path)
    assert ex.nodes_down() == {}
    subprocess.run(["scontrol", "update", "nodename=node2", "state=down",
                    "reason=kraft test"], check=True)
    try:
        down = ex.nodes_down()
    finally:
        subprocess.run(["scontrol", "update", "nodename=node2", "state=resume"], check=True)
    assert down == {"local/pod-n001": "slurm reports it down: kraft test"}
    deadline = time.time() + 30
    while ex.nodes_down():
        assert time.time() < deadline, ex.nodes_down()
        time.sleep(0.5)


@pytest.mark.parametrize("engine", ["slurm"], indirect=True)
def test_a_slurm_gang_is_one_slurm_job(serve):
    """A 2-node gang (4 + 2 GPUs) is one heterogeneous Slurm job, one component per rank on
    its node: Slurm starts and stops it whole; cancel ends every component."""
    tenant, server, live, home = serve
    a = tenant("acme")
    server()
    job_id = a.post("/v1/jobs", json={"gpus": 6, "command": ["sleep", "60"]}).json()["id"]
    wait(a, job_id, {"running"})
    deadline = time.time() + 20
    rows = []
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i %j %T %N %b"], capture_output=True,
                             text=True).stdout.split("\n")
        rows = [r.split() for r in out if f" kraft-{job_id}-1 " in r]
        if len(rows) == 2 and all(r[2] == "RUNNING" for r in rows):
            break
        time.sleep(0.2)
    leaders = {r[0].split("+")[0] for r in rows}
    assert len(rows) == 2 and len(leaders) == 1, rows  # one job, two components
    assert sorted((r[0].split("+")[1], r[3]) for r in rows) == [("0", "node1"), ("1", "node2")]
    a.post(f"/v1/jobs/{job_id}/cancel")
    assert wait(a, job_id, {"cancelled"})["state"] == "cancelled"
    deadline = time.time() + 20
    while any(f"kraft-{job_id}-" in n for n in live()) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(f"kraft-{job_id}-" in n for n in live())


@pytest.mark.parametrize("engine", ["ray"], indirect=True)
def test_ray_reports_dead_nodes_by_krafts_name(engine, tmp_path, monkeypatch):
    """On the live cluster every node is alive: nothing reported. Ray's state API listing a
    dead node (its answer as Ray gives it, replayed): reported by Kraft's name, unless a
    live node has taken its resource since (the node came back)."""
    from kraft.cluster.state import ClusterState
    from kraft.exec.router import make_executor
    from kraft.spec.load import load_fleet

    ex = make_executor(ClusterState(load_fleet("ray-local")), tmp_path)
    assert ex.nodes_down() == {}
    real = httpx.get(f"{RAY}/api/v0/nodes", params={"detail": 1}, timeout=10).json()
    rows = real["data"]["result"]["result"]
    node2 = next(r for r in rows if "node2" in r["resources_total"])
    dead = {**node2, "state": "DEAD", "state_message": "raylet died"}

    def answer(rows):
        body = {**real, "data": {"result": {**real["data"]["result"], "result": rows}}}
        return lambda *a, **kw: httpx.Response(200, json=body)
    others = [r for r in rows if r is not node2]
    monkeypatch.setattr(httpx, "get", answer([*others, dead]))
    assert ex.nodes_down() == {"local/pod-n001": "ray reports it dead: raylet died"}
    monkeypatch.setattr(httpx, "get", answer([*others, dead, node2]))  # back, a new node id
    assert ex.nodes_down() == {}
