"""Several `kraft serve` on one database (issue #17): on PostgreSQL exactly one runs the
scheduling loop, under a lease, and the others stand by, taking over when it dies, is paused
or stops; on SQLite a second instance on the same file is refused."""

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from test_recovery import KRAFT, free_port, kraft, start_server

from kraft.control.leader import LEASE_S


def serve(home: Path, port: int, db: str | None = None) -> subprocess.Popen:
    return start_server(home, port, db, log=home.parent / f"{home.name}.log")


def log_of(home: Path) -> str:
    return (home.parent / f"{home.name}.log").read_text()


def until(test, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (value := test()):
            return value
        time.sleep(0.05)
    raise AssertionError(what)


def test_a_second_instance_on_the_same_sqlite_folder_is_refused(tmp_path):
    home = tmp_path / "home"
    first = serve(home, port := free_port())
    try:
        metrics = sorted((home / "prometheus").iterdir())
        second = subprocess.run([*KRAFT, "serve", "--data-dir", str(home), "--port",
                                 str(free_port())], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        said = " ".join(second.stderr.split())
        assert f"in use by another kraft serve (pid {first.pid})" in said, said
        assert "PostgreSQL" in said
        # refused before it touched anything: the first one's metrics files are still there
        assert sorted((home / "prometheus").iterdir()) == metrics
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        first.terminate()
        first.wait(timeout=30)
    again = serve(home, free_port())  # the lock went with its holder
    again.terminate()
    again.wait(timeout=30)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_instances_on_one_postgresql_run_each_job_once_and_fail_over(db_url, tmp_path):
    """12 jobs submitted alternately to two instances: each runs exactly once, by the one
    loop (the other said it stands by). SIGKILL of the leader: the standby takes over and
    runs new work within 10 s."""
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    token = re.search(r"kt_[A-Za-z0-9_-]+", kraft("admin", "tenant", "create", "acme",
                                                   "--data-dir", str(a_home), "--db",
                                                   db_url).stdout).group(0)
    a = serve(a_home, a_port := free_port(), db_url)
    until(lambda: "leader:" in log_of(a_home), 30, "the first instance did not lead")
    b = serve(b_home, b_port := free_port(), db_url)
    try:
        until(lambda: "standby:" in log_of(b_home), 30, "the second did not stand by")
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
                   for port in (a_port, b_port)]
        body = {"gpus": 1, "command": ["bash", "-c", "echo $KRAFT_JOB_ID >> $HOME/marks"]}
        ids = [clients[k % 2].post("/v1/jobs", json=body).json()["id"] for k in range(12)]
        until(lambda: all(clients[1].get(f"/v1/jobs/{i}").json()["state"] == "succeeded"
                          for i in ids), 60, "the 12 jobs did not all succeed")
        marks = (a_home / "homes" / "acme" / "marks").read_text().split()
        assert sorted(map(int, marks)) == sorted(ids)  # each once, all by the leader
        assert not (b_home / "homes" / "acme" / "marks").exists()

        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        t0 = time.time()
        job = clients[1].post("/v1/jobs", json=body).json()["id"]
        until(lambda: clients[1].get(f"/v1/jobs/{job}").json()["state"] == "succeeded", 10,
              "the standby did not take over within 10 s")
        print(f"failover: SIGKILL of the leader to a new job done on the standby in "
              f"{time.time() - t0:.2f} s")
        assert "leader:" in log_of(b_home)
        assert (b_home / "homes" / "acme" / "marks").read_text().split() == [str(job)]
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


# ---- a cluster of instances on one host: one database, one runs folder, one work folder ----

FLEET = """name: ha
sites:
  - name: local
    country: "NO"
    jurisdiction: EEA
    grid_zone: NO-NO1
    it_power_budget_mw: 1
    pods: [{name: pod, nodes: [{count: %d, gpus: %d, model: H100-SXM}]}]
"""
# Each rank leaves one line when it ends: job, rank, attempt, node, GPUs, start and end (ns).
# Two lines for a rank: it ran twice; the intervals: which GPUs were in use when.
MARK = ('s=$(date +%s%N); sleep {sleep}; echo "$KRAFT_JOB_ID $RANK $KRAFT_ATTEMPT $KRAFT_NODE '
        '$CUDA_VISIBLE_DEVICES $s $(date +%s%N)" >> $HOME/marks')


class Instances:
    """`kraft serve` instances on one PostgreSQL database, sharing the runs folder (so a
    standby re-adopts the leader's jobs) and the tenants' work folder."""

    def __init__(self, root: Path, db_url: str, nodes: int = 2, gpus: int = 4):
        self.root, self.db_url = root, db_url
        (root / "fleet.yaml").write_text(FLEET % (nodes, gpus))
        self.shared = ("--runs-dir", str(root / "runs"), "--work-dir", str(root / "homes"),
                       "--grace-s", "1")
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.db = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
        self.token = re.search(r"kt_[A-Za-z0-9_-]+", kraft(
            "admin", "tenant", "create", "acme", "--data-dir", str(root / "i0"), "--db",
            db_url).stdout).group(0)

    def start(self, name: str) -> None:
        home = self.root / name
        self.ports[name] = port = free_port()
        self.procs[name] = start_server(home, port, self.db_url,
                                        fleet=str(self.root / "fleet.yaml"),
                                        extra=self.shared, log=self.root / f"{name}.log")

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def client(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports[name]}", timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def lease(self) -> tuple[int, int] | None:
        """(epoch, pid of the `kraft serve` whose loop holds it), as the database has it."""
        with self.db.connect() as c:
            row = c.execute(text("SELECT epoch, holder FROM leases WHERE name = 'loop' "
                                 "AND until > clock_timestamp()")).first()
        if row is None:
            return None
        loop_pid = int(row.holder.rsplit(":", 1)[1])
        try:
            stat = Path(f"/proc/{loop_pid}/stat").read_text()
        except FileNotFoundError:
            return None
        return row.epoch, int(stat.rsplit(")", 1)[1].split()[1])  # its parent

    def leader(self, timeout: float = 30, not_epoch: int | None = None) -> tuple[str, int]:
        """The instance that leads (name, epoch), once one does (with another epoch)."""
        def found():
            held = self.lease()
            if held is None or held[0] == not_epoch:
                return None
            return next(((n, held[0]) for n, p in self.procs.items()
                         if p.pid == held[1] and p.poll() is None), None)
        return until(found, timeout, "no instance took the lease")

    def first_start(self, epoch: int) -> float | None:
        with self.db.connect() as c:
            return c.execute(text("SELECT min(start_s) FROM attempts WHERE leader_epoch = :e"),
                             {"e": epoch}).scalar()

    def loop_pid(self, name: str) -> int:
        pid = self.procs[name].pid
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return next(int(k) for k in kids
                    if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes())

    def marks(self) -> list[tuple]:
        path = self.root / "homes" / "acme" / "marks"
        lines = path.read_text().split("\n") if path.exists() else []
        return [((int(j), int(r)), int(a), node, tuple(map(int, gpus.split(","))), int(s),
                 int(e)) for j, r, a, node, gpus, s, e in (line.split() for line in lines
                                                          if len(line.split()) == 7)]

    def jobs(self) -> list[dict]:
        """Every job, from whichever instance answers (one may be down)."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is None:
                    try:
                        with self.client(name) as c:
                            return c.get("/v1/jobs", params={"limit": 10000}).json()
                    except httpx.TransportError:
                        pass
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.db.dispose()


def check_marks(marks: list[tuple], ranks: list, fleet_gpus: int) -> None:
    """Every rank (job id, rank; a bare id: rank 0) once, and no GPU in use by two at any
    moment (so neither more than the fleet)."""
    want = sorted(r if isinstance(r, tuple) else (r, 0) for r in ranks)
    ran = Counter(r for r, *_ in marks)
    twice = sorted(r for r, n in ran.items() if n > 1)
    assert not twice, f"ranks (job, rank) that ran twice: {twice[:10]}"
    assert sorted(ran) == want, f"ranks that never ran: {sorted(set(want) - set(ran))[:10]}"
    edges = sorted([(s, len(g)) for *_, g, s, _ in marks] + [(e, -len(g)) for *_, g, _, e
                                                               in marks],
                   key=lambda x: (x[0], x[1]))  # an end before a start at the same ns
    in_use = peak = 0
    for _, delta in edges:
        in_use += delta
        peak = max(peak, in_use)
    assert peak <= fleet_gpus, f"{peak} GPUs in use at once on a fleet of {fleet_gpus}"
    by_gpu: dict[tuple, list] = {}
    for j, _, node, gpus, s, e in marks:
        for g in gpus:
            by_gpu.setdefault((node, g), []).append((s, e, j))
    for gpu, spans in by_gpu.items():
        spans.sort()
        for (_, e0, j0), (s1, _, j1) in zip(spans, spans[1:]):
            assert s1 >= e0, f"GPU {gpu}: job {j1} started before job {j0} ended"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_leader_paused_past_its_lease_applies_nothing_when_it_wakes(db_url, tmp_path):
    """SIGSTOP of the leader (its API and its loop) while its jobs run and more wait: the
    standby takes the lease once it expires, re-adopts the running jobs and runs the
    waiting ones. SIGCONT: the old leader, which still holds all of that in memory, applies
    nothing (no job runs twice, no attempt is started under its epoch after the pause), and
    goes back to standing by."""
    ha = Instances(tmp_path, db_url, nodes=1, gpus=2)
    try:
        ha.start("a")
        old, old_epoch = ha.leader()
        assert old == "a"
        ha.start("b")
        until(lambda: "standby:" in ha.log("b"), 30, "b did not stand by")
        with ha.client("b") as b:
            long = {"gpus": 1, "command": ["bash", "-c", MARK.format(sleep=3)]}
            short = {"gpus": 1, "command": ["bash", "-c", MARK.format(sleep=0.2)]}
            ids = [b.post("/v1/jobs", json=long).json()["id"] for _ in range(2)]
            until(lambda: all(b.get(f"/v1/jobs/{i}").json()["state"] == "running"
                              for i in ids), 30, "the long jobs did not start")
            ids += [b.post("/v1/jobs", json=short).json()["id"] for _ in range(4)]
            time.sleep(0.5)  # the old leader has ingested them: they wait in its memory
            paused = [ha.procs["a"].pid, ha.loop_pid("a")]
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            t0 = time.time()
            new, new_epoch = ha.leader(timeout=20, not_epoch=old_epoch)
            took_s = time.time() - t0
            assert new == "b" and new_epoch > old_epoch
            until(lambda: all(b.get(f"/v1/jobs/{i}").json()["state"] == "succeeded"
                              for i in ids), 60, "the standby did not finish the jobs")
            woke_ns = time.time_ns()
            for pid in reversed(paused):
                os.kill(pid, signal.SIGCONT)
            more = [b.post("/v1/jobs", json=short).json()["id"] for _ in range(2)]
            until(lambda: all(b.get(f"/v1/jobs/{i}").json()["state"] == "succeeded"
                              for i in more), 30, "new work did not run after the wake")
            time.sleep(2)  # time enough for an old leader that acted to have shown it
            check_marks(ha.marks(), ids + more, fleet_gpus=2)
            assert "applies nothing more" in ha.log("a")
            until(lambda: ha.log("a").count("standby:") >= 1, 20,
                  "the old leader did not go back to standing by")
            assert ha.procs["a"].poll() is None  # a still serves: it stands by
        with ha.db.connect() as c:
            late = c.execute(text("SELECT count(*) FROM attempts WHERE leader_epoch = :e AND "
                                  "start_s * 1e9 > :t"), {"e": old_epoch, "t": woke_ns}).scalar()
            epochs = dict(c.execute(text(
                "SELECT job_id, leader_epoch FROM attempts WHERE job_id = ANY(:ids)"),
                {"ids": ids[2:] + more}).all())
        assert late == 0
        assert set(epochs.values()) == {new_epoch}, epochs  # all the waiting work: b's
        print(f"lease: SIGSTOP of the leader to the standby holding it: {took_s:.2f} s")
    finally:
        ha.stop()


N_JOBS, CLIENTS, KILLS = 2000, 16, 3


def job_body(i: int) -> dict:
    gpus = 8 if i % 10 == 0 else 1 + i % 4  # every tenth a gang of two nodes
    return {"name": f"h{i}", "gpus": gpus,
            "command": ["bash", "-c", MARK.format(sleep=f"0.{i % 3}")]}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("n", [2, 3])
def test_instances_share_the_load_and_the_leader_is_killed_three_times(db_url, tmp_path, n):
    """N_JOBS submissions spread over n instances (a client whose instance is down sends
    its retry, same Idempotency-Key, to the next one), while the leader is SIGKILLed three
    times mid-run and started again: every job runs exactly once, every rank once, no GPU
    is used by two jobs at any moment, and each failover (SIGKILL to the first start under
    the new lease) is under 10 s."""
    ha = Instances(tmp_path, db_url, nodes=4, gpus=4)
    names = [f"i{k}" for k in range(n)]
    answers: dict[int, int] = {}
    failovers: list[float] = []
    try:
        for name in names:
            ha.start(name)
        ha.leader()
        done = threading.Event()

        def submit(worker: int) -> None:
            clients = [ha.client(name) for name in names]
            for i in range(worker, N_JOBS, CLIENTS):
                k = i
                while i not in answers:
                    try:
                        r = clients[k % n].post("/v1/jobs", json=job_body(i),
                                                headers={"Idempotency-Key": f"h{i}"})
                        if r.status_code in (200, 201):
                            answers[i] = r.json()["id"]
                            continue
                    except httpx.TransportError:
                        pass
                    k += 1  # that one is down (or busy): the next instance
                    time.sleep(0.05)
            for c in clients:
                c.close()

        def killer() -> None:
            for _ in range(KILLS):
                until(lambda: done.is_set() or len(ha.marks()) >= len(failovers) * 300 + 150,
                      300, "the jobs did not progress")
                name, epoch = ha.leader()
                ha.procs[name].send_signal(signal.SIGKILL)
                ha.procs[name].wait(timeout=30)
                t0 = time.time()
                _, new_epoch = ha.leader(timeout=20, not_epoch=epoch)
                first = until(lambda e=new_epoch: ha.first_start(e), 20,
                              "the new leader started nothing")
                failovers.append(first - t0)
                ha.start(name)  # the host is back: it stands by

        workers = [threading.Thread(target=submit, args=(w,)) for w in range(CLIENTS)]
        kills = threading.Thread(target=killer)
        t0 = time.time()
        for t in (*workers, kills):
            t.start()
        for t in workers:
            t.join(timeout=600)
        submitted_s = time.time() - t0
        def finished():
            jobs = ha.jobs()
            return jobs if all(j["state"] in ("succeeded", "failed") for j in jobs) else None
        jobs = until(finished, 600, "the jobs did not all end")
        done.set()
        kills.join(timeout=120)
        assert len(answers) == N_JOBS and len(failovers) == KILLS
        by_id = {j["id"]: j for j in jobs}
        assert len(jobs) == N_JOBS and set(by_id) == set(answers.values())  # none lost/doubled
        assert all(j["state"] == "succeeded" for j in jobs), \
            [j for j in jobs if j["state"] != "succeeded"][:3]
        ranks = [(j["id"], r) for j in jobs for r in range(len(j["placement"]))]
        check_marks(ha.marks(), ranks, fleet_gpus=16)
        print(f"{n} instances: {N_JOBS} jobs ({len(ranks)} ranks) submitted in "
              f"{submitted_s:.0f} s, all done in {time.time() - t0:.0f} s; SIGKILL of the "
              f"leader to its successor's first start: "
              f"{', '.join(f'{f:.1f}' for f in failovers)} s")
        assert max(failovers) < 10
    finally:
        ha.stop()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sigterm_of_the_leader_hands_over_without_dropping_a_request(db_url, tmp_path):
    """A rolling restart's step: SIGTERM to the leader while clients submit to both
    instances. The leader answers the requests it has (none is cut off mid-answer), hands
    the lease on at once (no wait for it to expire), and the other instance, which kept
    answering, takes over its running jobs. A client of the stopped instance sends its next
    request, same Idempotency-Key, to the other, as a load balancer would."""
    ha = Instances(tmp_path, db_url, nodes=1, gpus=4)
    try:
        ha.start("a")
        assert ha.leader()[0] == "a"
        ha.start("b")
        until(lambda: "standby:" in ha.log("b"), 30, "b did not stand by")
        answers: list[tuple] = []  # (instance, HTTP status or the transport error, job id)
        stop = threading.Event()

        def submit(worker: int, first: str) -> None:
            clients = {n: ha.client(n) for n in "ab"}
            at, k = first, 0
            while not stop.is_set():
                body = {"gpus": 1, "command": ["bash", "-c", MARK.format(sleep=0.2)]}
                try:
                    r = clients[at].post("/v1/jobs", json=body,
                                         headers={"Idempotency-Key": f"t{worker}-{k}"})
                    answers.append((at, r.status_code, r.json().get("id")))
                    k += 1
                except httpx.TransportError as e:
                    answers.append((at, type(e).__name__, None))
                    at = "b"  # that instance is going: the same request to the other
                time.sleep(0.1)
            for c in clients.values():
                c.close()

        threads = [threading.Thread(target=submit, args=(w, "ab"[w % 2])) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        _, epoch = ha.leader()
        ha.procs["a"].send_signal(signal.SIGTERM)
        t0 = time.time()
        new, _ = ha.leader(timeout=10, not_epoch=epoch)
        took_s = time.time() - t0
        assert new == "b" and took_s < LEASE_S - 1  # handed on, not left to expire
        # uvicorn's graceful stop, then the signal re-raised, as a supervisor expects
        assert ha.procs["a"].wait(timeout=30) == -signal.SIGTERM
        assert "Traceback" not in ha.log("a") and "error" not in ha.log("a"), ha.log("a")
        time.sleep(1.5)  # b goes on answering, now as the leader
        stop.set()
        for t in threads:
            t.join(timeout=30)
        kinds = Counter((at, status) for at, status, _ in answers)
        # b answered every request; a answered or refused the connection, never cut one off
        assert {s for (at, s) in kinds if at == "b"} == {201}, kinds
        assert {s for (at, s) in kinds if at == "a"} <= {201, "ConnectError"}, kinds
        ids = [i for _, status, i in answers if status == 201]
        assert kinds[("b", 201)] > 10 and len(set(ids)) == len(ids)
        jobs = until(lambda: (js := ha.jobs()) and all(j["state"] == "succeeded"
                                                       for j in js) and js, 120,
                     "the jobs did not all succeed")
        assert sorted(j["id"] for j in jobs) == sorted(ids)
        check_marks(ha.marks(), ids, fleet_gpus=4)
        print(f"hand-over: SIGTERM of the leader to the standby holding the lease: "
              f"{took_s:.2f} s; {len(ids)} submissions, every one answered ({dict(kinds)})")
    finally:
        ha.stop()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_api_processes_route_and_scale_one_service_on_their_summed_load(db_url, tmp_path):
    """One inference service called through two instances (two API processes, two
    gateways). Six streams through each: the loop's autoscaler sees twelve in flight and
    scales to 4 replicas (each gateway alone holds six: 2); requests spread over the new
    replicas from both gateways. Then one stream through each: it drains back to 1 replica,
    and no request through either gateway fails on a replica stopped under it."""
    from test_infer_live import SERVICE, load, stop_leftovers

    ha = Instances(tmp_path, db_url, nodes=1, gpus=4)
    clients = {}
    try:
        for name in "ab":
            ha.start(name)
            clients[name] = ha.client(name)
        until(lambda: "standby:" in ha.log("b"), 30, "b did not stand by")
        spec = {**SERVICE, "replicas": {"min": 1, "max": 4},
                "autoscale": {**SERVICE["autoscale"], "cooldown_s": 1}}
        assert clients["a"].post("/v1/services", json=spec).status_code == 201

        def service(name):
            return clients[name].get("/v1/services/chat").json()
        until(lambda: all(sum(r["ready"] for r in service(n)["replicas"]) == 1 for n in "ab"),
              60, "the first replica was not ready through both gateways")
        results = {"a": [], "b": []}
        pools = [t for n in "ab" for t in load(clients[n], 6, 10, results[n])]
        until(lambda: service("b")["desired_replicas"] == 4, 30,
              "the autoscaler did not see both gateways' load")
        until(lambda: all(sum(r["ready"] for r in service(n)["replicas"]) >= 3 for n in "ab"),
              30, "new replicas did not become ready")
        for t in pools:
            t.join()
        for name, got in results.items():
            assert len(got) > 20 and all(ok for ok, _, _ in got), (name, got[:3])
            used = Counter(rep for _, rep, _ in got)
            assert len(used) >= 3, (name, used)  # each gateway used the new replicas

        results = {"a": [], "b": []}
        pools = [t for n in "ab" for t in load(clients[n], 1, 14, results[n])]
        until(lambda: service("a")["desired_replicas"] == 1 and
              len(service("a")["replicas"]) == 1, 40, "did not drain back to 1 replica")
        for t in pools:
            t.join()
        for name, got in results.items():
            assert got and all(ok for ok, _, _ in got), (name, [r for r in got if not r[0]])
        jobs = clients["a"].get("/v1/jobs").json()
        # 4 -> 1 drains three; with a 1 s cooldown the autoscaler may also step down and up
        # again on the way, which drains one more each time
        assert len([j for j in jobs if j["state"] == "cancelled"]) >= 3
        assert len([j for j in jobs if j["state"] == "running"]) == 1
    finally:
        for c in clients.values():
            c.close()
        ha.stop()
        stop_leftovers(tmp_path)
