"""The live dashboard in headless Chromium against a real `kraft serve`: it loads with no
console error, its plot draws, and it shows jobs submitted during the test -- one running,
one waiting with the scheduler's reason -- then refreshes by itself."""

import re
import time

import httpx
from browser import chrome, console_errors, plots_drawn
from test_infer_live import stop_leftovers
from test_recovery import free_port, kraft


def test_dashboard_shows_jobs_submitted_during_the_test(tmp_path):
    import subprocess
    import sys

    driver = chrome()  # first: a missing browser skips before anything is started
    home = tmp_path / "home"
    server = client = None
    try:
        out = kraft("admin", "tenant", "create", "acme", "--data-dir", str(home)).stdout
        token = re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kraft.cli", "serve", "--data-dir",
                                   str(home), "--port", str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        operator = None
        deadline = time.time() + 30
        while operator is None and time.time() < deadline:  # printed once, on first start
            found = re.search(r"ko_[A-Za-z0-9_-]+", server.stdout.readline())
            operator = found.group(0) if found else None
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        assert operator, "kraft serve printed no operator token"
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                assert time.time() < deadline
                time.sleep(0.2)
        driver.get(f"{base}/dashboard#token={operator}")
        deadline = time.time() + 15
        while plots_drawn(driver)[1] < 1 and time.time() < deadline:
            time.sleep(0.2)
        assert plots_drawn(driver) == [1, 1], driver.get_log("browser")
        run = client.post("/v1/jobs", json={"name": "train-dash", "gpus": 6,
                                            "command": ["sleep", "60"]}).json()
        wait = client.post("/v1/jobs", json={"name": "waits-dash", "gpus": 4,
                                             "command": ["true"]}).json()
        deadline = time.time() + 20
        body = ""
        while time.time() < deadline:
            body = driver.find_element("tag name", "body").text
            if "train-dash" in body and "waits-dash" in body and "6 / 8 GPUs" in body:
                break
            time.sleep(0.5)
        assert "train-dash" in body and "waits-dash" in body and "6 / 8 GPUs" in body, body
        assert "waiting" in driver.find_element("id", "queue").text  # the reason is shown
        nodes = driver.find_element("id", "nodes").text  # the node view: each node's state
        assert "up" in nodes and "H100-SXM" in nodes, nodes
        plots, drawn = plots_drawn(driver)
        assert plots == drawn == 1
        assert console_errors(driver) == []
        assert driver.find_element("id", "error").text == ""
        client.post(f"/v1/jobs/{run['id']}/cancel")
        client.post(f"/v1/jobs/{wait['id']}/cancel")
    finally:
        driver.quit()
        if client is not None:
            client.close()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        stop_leftovers(home)


def test_dashboard_data_is_for_the_operator_only(tmp_path):
    from fastapi.testclient import TestClient

    from kraft.control.api import create_app
    from kraft.control.store import make_engine, migrate
    from kraft.spec.load import load_fleet

    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    migrate(engine)
    with TestClient(create_app(engine, tmp_path, fleet=load_fleet("local"))) as c:
        assert c.get("/admin/dashboard").status_code == 401
        assert c.get("/admin/dashboard", headers={"Authorization": "Bearer x"}).status_code == 401
        assert c.get("/dashboard").status_code == 200  # the page holds no data


def test_dashboard_data_has_nodes_services_and_waiting_since_last_queued(tmp_path):
    """A job submitted 100 s ago whose first attempt ended 5 s ago has waited 5 s, not 100
    (the running time was counted as waiting); a drained node shows as drained with its
    reason; an inference service shows its replicas."""
    import time

    from fastapi.testclient import TestClient

    from kraft.control.api import create_app
    from kraft.control.auth import ensure_operator_token
    from kraft.control.store import (
        AttemptRow,
        JobRow,
        NodeRow,
        ServiceRow,
        TenantRow,
        make_engine,
        migrate,
        sessions,
    )
    from kraft.spec.load import load_fleet

    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    migrate(engine)
    now = time.time()
    with sessions(engine)() as s:
        s.add(TenantRow(name="acme", spec={"name": "acme"}))
        s.flush()
        s.add(JobRow(id=1, tenant="acme", name="requeued", spec={"gpus": 2}, state="admitted",
                     attempt=1, submitted_s=now - 100, reason="waiting: queued"))
        s.flush()
        s.add(AttemptRow(job_id=1, attempt=1, tenant="acme", site="local", pool="p", nodes=[],
                         gpus=2, start_s=now - 95, end_s=now - 5, ended="preempted"))
        s.add(JobRow(id=2, tenant="acme", name="fresh", spec={"gpus": 1}, state="pending",
                     submitted_s=now - 30))
        s.add(ServiceRow(id=7, tenant="acme", name="chat", spec={"model": "llama-3.1-8b"},
                         desired_replicas=2))
        s.add(JobRow(id=3, tenant="acme", name="chat-r0", spec={"gpus": 1}, state="admitted",
                     submitted_s=now, service_id=7))
        fleet = load_fleet("local")
        from kraft.cluster.state import ClusterState

        first = ClusterState(fleet).node_name[0]
        s.add(NodeRow(name=first, state="drain", reason="fan noise"))
        s.commit()
    token = ensure_operator_token(tmp_path)
    with TestClient(create_app(engine, tmp_path, fleet=fleet)) as c:
        d = c.get("/admin/dashboard", headers={"Authorization": f"Bearer {token}"}).json()
    waited = {q["name"]: q["waiting_s"] for q in d["queue"]}
    assert 4 <= waited["requeued"] <= 15, waited  # not ~100
    assert 29 <= waited["fresh"] <= 40, waited
    nodes = {n["node"]: n for n in d["nodes"]}
    assert nodes[first]["state"] == "drained" and nodes[first]["reason"] == "fan noise"
    assert d["nodes"][0]["node"] == first  # not up: listed first
    assert d["services"] == [{"service": "chat", "tenant": "acme", "model": "llama-3.1-8b",
                              "desired": 2, "running": 0, "starting": 1}]
