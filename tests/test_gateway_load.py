"""Several API processes, one service (issue #17): each gateway publishes what it holds to
`gateway_load`; a gateway routes on its own in-flight count plus the others', and the
scheduling loop's autoscaler sums every fresh gateway's figures and stops a draining replica
only once every gateway has seen it draining with nothing in flight on it."""

import time

import pytest
from test_infer_live import SERVICE

from kraft.control.api import add_tenant
from kraft.control.store import GatewayLoadRow, JobRow, ServiceRow, make_engine, migrate, sessions
from kraft.infer.live import GATEWAY_STALE_S, Gateway, LiveReplica, LiveService, autoscale_services
from kraft.infer.routing import make_router
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.load import load_fleet
from kraft.spec.models import TenantSpec


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'kraft.db'}")
    migrate(engine)
    with sessions(engine)() as s:
        add_tenant(s, TenantSpec(name="acme"))
        svc = ServiceRow(tenant="acme", name="chat", spec=SERVICE, desired_replicas=2)
        s.add(svc)
        s.flush()
        for _ in range(2):
            s.add(JobRow(tenant="acme", name="chat-replica", spec={}, state="running",
                         service_id=svc.id, placement=[{"node": "n0", "port": 1}]))
        s.commit()
    yield engine
    engine.dispose()


def gateway(engine, name: str) -> tuple[Gateway, LiveService]:
    """A gateway that knows the service and its two replicas (as its refresh would)."""
    g = Gateway(engine, load_fleet("local"))
    g.name = name
    spec = InferenceServiceSpec.model_validate({**SERVICE, "tenant": "acme"})
    svc = LiveService(1, "acme", "chat", spec, 2, False, router=make_router(spec.router, 1e9))
    for job_id in (1, 2):
        svc.replicas[job_id] = LiveReplica(job_id, "local", f"http://x/{job_id}", ready=True)
    g.services[1] = svc
    return g, svc


def test_a_gateway_routes_on_the_load_other_gateways_hold(db):
    a, svc_a = gateway(db, "host:1")
    b, svc_b = gateway(db, "host:2")
    svc_a.replicas[1].mine = 5  # five streams on replica 1 through a
    a._publish(time.time())
    b._publish(time.time())
    assert [r.elsewhere for r in svc_b.replicas.values()] == [5, 0]
    chosen = svc_b.router.choose(list(svc_b.replicas.values()), 10, time.time(), {})
    assert chosen.job_id == 2  # b alone would have seen two idle replicas and taken the first
    b_only, svc = gateway(db, "host:3")  # never published or read: its own count only
    assert svc.router.choose(list(svc.replicas.values()), 10, time.time(), {}).job_id == 1


def test_the_autoscaler_sums_every_fresh_gateway_and_ignores_a_dead_one(db):
    now = time.time()
    with sessions(db)() as s:
        rows = [("host:1", {"1": 4}, 1, now), ("host:2", {"2": 4}, 0, now),
                ("gone:9", {"1": 50}, 50, now - GATEWAY_STALE_S - 1)]  # a killed process
        for name, in_flight, queued, at in rows:
            s.add(GatewayLoadRow(gateway=name, service_id=1, in_flight=in_flight,
                                 draining_seen=[], queued=queued, met=0, finished=0, at_s=at))
        s.commit()
        assert autoscale_services(s, now, {})
        # 4 + 4 in flight + 1 queued over a target of 3 per replica: 3 (the dead one's 100
        # would have pushed it to the bound, 4); each gateway alone: 2
        assert s.get(ServiceRow, 1).desired_replicas == 3


def test_a_draining_replica_stops_only_when_every_gateway_let_go_of_it(db):
    spec = {**SERVICE, "autoscale": {**SERVICE["autoscale"], "enabled": False}}
    now = time.time()
    with sessions(db)() as s:
        s.get(ServiceRow, 1).spec = spec
        s.get(JobRow, 2).draining = True
        a = GatewayLoadRow(gateway="host:1", service_id=1, in_flight={}, draining_seen=[2],
                           queued=0, met=0, finished=0, at_s=now)
        b = GatewayLoadRow(gateway="host:2", service_id=1, in_flight={"2": 1},
                           draining_seen=[], queued=0, met=0, finished=0, at_s=now)
        s.add_all([a, b])
        s.commit()
        autoscale_services(s, now, {})
        assert not s.get(JobRow, 2).cancel_requested  # b has not seen it draining yet
        b.draining_seen = [2]
        s.commit()
        autoscale_services(s, now, {})
        assert not s.get(JobRow, 2).cancel_requested  # b still has a request on it
        b.in_flight = {}
        s.commit()
        assert autoscale_services(s, now, {})
        assert s.get(JobRow, 2).cancel_requested and not s.get(JobRow, 1).cancel_requested


def test_with_no_gateway_reporting_a_service_keeps_its_size(db):
    with sessions(db)() as s:
        assert not autoscale_services(s, time.time(), {})
        assert s.get(ServiceRow, 1).desired_replicas == 2
