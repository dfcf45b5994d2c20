"""Live inference, end to end through a real `kraft serve`: a service's replicas are stand-in
model servers (kraft.infer.standin) started by the local executor; completions stream through
the gateway; the autoscaler adds replicas under load and drains them when load falls, with no
failed request; a caller whose residency no replica satisfies is refused."""

import re
import sys
import threading
import time
from collections import Counter

import httpx
import pytest
from test_recovery import free_port, kraft, start_server

SERVICE = {
    "name": "chat", "model": "llama-3.1-8b", "gpu": "H100-SXM", "tp": 1, "shared": True,
    "slo": {"ttft_ms": 2000, "tpot_ms": 200},
    "replicas": {"min": 2, "max": 4},
    "autoscale": {"enabled": True, "metric": "queue", "target_queue": 3, "interval_s": 0.5,
                  "cooldown_s": 2},
    "command": [sys.executable, "-m", "kraft.infer.standin", "--prefill-ms", "10",
                "--tpot-ms", "25"],
}


def token(home, *args) -> str:
    out = kraft("admin", "tenant", "create", *args, "--data-dir", str(home)).stdout
    return re.search(r"kt_[A-Za-z0-9_-]+", out).group(0)


def stop_leftovers(home):
    """Jobs outlive `kraft serve` (a restart re-adopts them); a test stops its own."""
    import os
    import signal
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"kraft.exec.runner" in cmd and str(home).encode() in cmd:
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def wait_for(client, test, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        svc = client.get("/v1/services/chat").json()
        if test(svc):
            return svc
        time.sleep(0.2)
    raise AssertionError(f"{what}: {svc}")


def stream(client, results, tokens=40):
    body = {"model": "chat", "prompt": "hello", "max_tokens": tokens, "stream": True}
    try:
        with client.stream("POST", "/v1/completions", json=body) as r:
            data = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
            ok = r.status_code == 200 and data[-1] == "data: [DONE]" and len(data) == tokens + 1
            results.append((ok, r.headers.get("x-kraft-replica"), r.status_code))
    except httpx.HTTPError as e:
        results.append((False, None, repr(e)))


def load(client, threads, seconds, results):
    stop = time.time() + seconds

    def worker():
        while time.time() < stop:
            stream(client, results)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    return pool


def test_stream_scale_up_drain_down_and_residency(tmp_path):
    home = tmp_path / "home"
    acme, us = token(home, "acme"), token(home, "us-co", "--jurisdictions", "US")
    port = free_port()
    server = start_server(home, port, None)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {acme}"},
                          timeout=60)
    other = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {us}"}, timeout=60)
    try:
        # a bad service names each field where the CLI looks for it, an unknown one with
        # the fields allowed
        bad = client.post("/v1/services", json={**SERVICE, "replica": 2}).json()["detail"]
        assert [d["loc"] for d in bad] == [["body", "replica"]], bad
        assert bad[0]["msg"].startswith("unknown field; allowed: name, tenant, model"), bad
        assert client.post("/v1/services", json=SERVICE).status_code == 201
        wait_for(client, lambda s: sum(r["ready"] for r in s["replicas"]) == 2,
                 "two replicas ready")

        # one streamed completion, one chat completion
        results = []
        stream(client, results, tokens=5)
        assert results[0][0], results
        chat = client.post("/v1/chat/completions", json={
            "model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert chat.status_code == 200
        assert chat.json()["choices"][0]["message"]["content"] == " tok0 tok1 tok2"

        # load: 16 streams at once, ~1 s each, for 10 s -> queue 8 per replica > 3: scale up
        results = []
        pool = load(client, 16, 10, results)
        svc = wait_for(client, lambda s: sum(r["ready"] for r in s["replicas"]) >= 4,
                       "scaled up to 4 ready replicas", timeout=30)
        assert svc["desired_replicas"] == 4  # the bound: 16 in flight / 3 would want 6
        for t in pool:
            t.join()
        assert len(results) > 50 and all(ok for ok, _, _ in results), \
            [r for r in results if not r[0]][:3]
        used = Counter(rep for _, rep, _ in results)
        assert len(used) >= 3, used  # the new replicas took requests

        # light load (2 streams): the autoscaler drains back to 2 while requests still flow
        results = []
        pool = load(client, 2, 12, results)
        wait_for(client, lambda s: len(s["replicas"]) == 2 and s["desired_replicas"] == 2,
                 "drained down to 2 replicas", timeout=30)
        for t in pool:
            t.join()
        assert results and all(ok for ok, _, _ in results), \
            [r for r in results if not r[0]][:3]
        jobs = client.get("/v1/jobs").json()
        drained = [j for j in jobs if j["state"] == "cancelled"]
        assert len(drained) == 2, jobs
        events = client.get(f"/v1/jobs/{drained[0]['id']}/events").json()
        assert "drained" in events[-1]["detail"]

        # residency: the US-only tenant may call the shared service, but no replica is in the
        # US -> refused with the reason; and it cannot see the service's details
        refused = other.post("/v1/completions", json={"model": "chat", "prompt": "hi"})
        assert refused.status_code == 451 and "residency" in refused.json()["detail"]
        assert other.get("/v1/services/chat").status_code == 404
        assert other.post("/v1/completions", json={"model": "nope"}).status_code == 404
        assert httpx.post(f"{base}/v1/completions", json={"model": "chat"}).status_code == 401

        # delete: replicas drain and stop
        assert client.delete("/v1/services/chat").status_code == 204
        deadline = time.time() + 30
        while time.time() < deadline:
            if not [j for j in client.get("/v1/jobs").json() if j["state"] == "running"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("replicas still running after delete")
    finally:
        client.close()
        other.close()
        server.terminate()
        server.wait(timeout=15)
        stop_leftovers(home)


def test_replicas_of_a_reserved_tenant_preempt_spot_training(tmp_path):
    """One fleet, one scheduler: a spot training job holds all 8 GPUs; the lab's service
    needs 2 replicas of 2 GPUs inside its 4-GPU reservation, so the spot job is preempted
    (and requeued) for them."""
    home = tmp_path / "home"
    lab = token(home, "lab", "--tier", "reserved", "--reserved-gpus", "4")
    spot = token(home, "crowd", "--tier", "spot")
    port = free_port()
    server = start_server(home, port, None)
    base = f"http://127.0.0.1:{port}"
    lab_c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {lab}"}, timeout=30)
    spot_c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {spot}"},
                          timeout=30)
    try:
        train = spot_c.post("/v1/jobs", json={"name": "train", "gpus": 8,
                                              "command": ["sleep", "120"]}).json()
        deadline = time.time() + 20
        while spot_c.get(f"/v1/jobs/{train['id']}").json()["state"] != "running":
            assert time.time() < deadline, "training never started"
            time.sleep(0.2)
        spec = {**SERVICE, "tp": 2, "shared": False, "autoscale": {"enabled": False},
                "replicas": {"min": 2, "max": 2}}
        assert lab_c.post("/v1/services", json=spec).status_code == 201
        wait_for(lab_c, lambda s: sum(r["ready"] for r in s["replicas"]) == 2,
                 "two replicas ready beside the preempted training")
        events = spot_c.get(f"/v1/jobs/{train['id']}/events").json()
        assert any(e["to_state"] == "preempted" for e in events), events
        assert spot_c.get(f"/v1/jobs/{train['id']}").json()["state"] == "admitted"
        r = lab_c.post("/v1/completions", json={"model": "chat", "prompt": "hi",
                                                "max_tokens": 2})
        assert r.status_code == 200
    finally:
        lab_c.close()
        spot_c.close()
        server.terminate()
        server.wait(timeout=15)
        stop_leftovers(home)


def test_scale_from_zero_on_the_first_request(tmp_path):
    """min 0: no replica until a request comes; the request waits in the gateway, counts as
    demand, the autoscaler starts a replica, and the request is served by it."""
    home = tmp_path / "home"
    acme = token(home, "acme")
    port = free_port()
    server = start_server(home, port, None)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {acme}"}, timeout=60)
    try:
        spec = {**SERVICE, "shared": False, "replicas": {"min": 0, "max": 1}}
        assert client.post("/v1/services", json=spec).status_code == 201
        time.sleep(1)
        assert client.get("/v1/services/chat").json()["replicas"] == []
        r = client.post("/v1/completions", json={"model": "chat", "prompt": "hi",
                                                 "max_tokens": 2})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == " tok0 tok1"
        assert len(client.get("/v1/services/chat").json()["replicas"]) == 1
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=15)
        stop_leftovers(home)


def test_a_service_the_gateway_has_not_seen_yet_is_found_not_refused(tmp_path):
    """Created a moment ago, or through another API process: this process's gateway learns
    of it at its next refresh, and a request in between waits for that, not a 404."""
    import asyncio

    from kraft.control.api import add_tenant
    from kraft.control.store import ServiceRow, make_engine, migrate, sessions
    from kraft.infer.live import Gateway, RoutingError
    from kraft.spec.load import load_fleet
    from kraft.spec.models import TenantSpec

    engine = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(engine)
    spec = {k: v for k, v in SERVICE.items() if k != "autoscale"}

    async def main():
        gateway = Gateway(engine, load_fleet("local"))
        await gateway.start()
        try:
            await asyncio.sleep(0.3)  # a refresh or more with no service on record
            with sessions(engine)() as s:  # as another API process would write it
                add_tenant(s, TenantSpec(name="acme"))
                s.add(ServiceRow(tenant="acme", name="chat", spec=spec, desired_replicas=2))
                s.commit()
            found = await gateway.find_fresh("acme", "chat")
            assert found.name == "chat" and found.tenant == "acme"
            try:  # a name that is on record nowhere is still a 404, after the wait
                await gateway.find_fresh("acme", "nope", wait_s=2)
                raise AssertionError("found a service that does not exist")
            except RoutingError as e:
                assert e.status == 404
        finally:
            await gateway.close()

    asyncio.run(main())
    engine.dispose()


@pytest.mark.parametrize("router", ["least-outstanding", "round-robin", "slo-aware"])
def test_concurrent_streams_spread_over_the_replicas_as_the_router_says(tmp_path, router):
    """16 streams at once to a service of 4 ready replicas: each router puts 4 on each (all
    16 were seen going to the first replica)."""
    home = tmp_path / "home"
    acme = token(home, "acme")
    port = free_port()
    server = start_server(home, port, None)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {acme}"}, timeout=60)
    fixed = {**SERVICE, "router": router, "replicas": {"min": 4, "max": 4},
             "autoscale": {"enabled": False}}
    try:
        assert client.post("/v1/services", json=fixed).status_code == 201
        wait_for(client, lambda s: sum(r["ready"] for r in s["replicas"]) == 4,
                 "four replicas ready")
        results, go = [], threading.Barrier(16)

        def one():
            go.wait()
            stream(client, results, tokens=40)  # ~1 s each: all 16 in flight together
        pool = [threading.Thread(target=one) for _ in range(16)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert all(ok for ok, _, _ in results), results
        per_replica = Counter(rep for _, rep, _ in results)
        assert sorted(per_replica.values()) == [4, 4, 4, 4], per_replica
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=15)
        stop_leftovers(home)
