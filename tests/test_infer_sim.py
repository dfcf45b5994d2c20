"""The request-level inference simulator: oracle timings, batching, KV limits, residency,
autoscaling, and the property that more capacity never lowers SLO attainment."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kraft.cli import app
from kraft.infer.latency import MODELS, ReplicaTiming
from kraft.infer.requests import Requests, load_requests
from kraft.infer.sim import PlacementError, simulate
from kraft.spec.inference import InferenceServiceSpec
from kraft.spec.load import load_fleet
from kraft.spec.models import FleetSpec

ONE_SITE = FleetSpec.model_validate({"name": "one", "sites": [{
    "name": "oslo", "country": "NO", "jurisdiction": "EEA", "grid_zone": "NO-NO1",
    "it_power_budget_mw": 10,
    "pods": [{"name": "p", "nodes": [{"count": 16, "gpus": 8, "model": "H100-SXM"}]}]}]})


def service(**kw) -> InferenceServiceSpec:
    base = dict(name="chat", model="llama-2-70b", gpu="H100-SXM", tp=8,
                slo={"ttft_ms": 1500, "tpot_ms": 60, "percentile": 90},
                replicas={"min": 1, "max": 16})
    return InferenceServiceSpec.model_validate({**base, **kw})


def trace(arrival, prompt, output) -> Requests:
    return Requests("t", np.asarray(arrival, float), np.asarray(prompt, np.int64),
                    np.asarray(output, np.int64))


def test_one_request_matches_the_latency_model():
    timing = ReplicaTiming(MODELS["llama-2-70b"], "H100-SXM", 8)
    res = simulate(service(), ONE_SITE, trace([0.0], [1000], [50]), "round-robin", 1)
    first_ms = timing.prefill_ms(1000, 1000 ** 2)
    decode_ms = sum(timing.decode_ms(1, 1001 + j) for j in range(49))  # token by token
    assert res.ttft_s[0] * 1e3 == pytest.approx(first_ms, rel=1e-9)
    assert res.tpot_s[0] * 1e3 == pytest.approx(decode_ms / 49, rel=1e-9)


def test_requests_arriving_together_share_one_prefill():
    res = simulate(service(), ONE_SITE, trace([0.0, 0.0, 0.0], [500, 800, 300], [10, 10, 10]),
                   "round-robin", 1)
    assert len(set(res.ttft_s)) == 1  # one batched prefill: the same first-token time
    timing = ReplicaTiming(MODELS["llama-2-70b"], "H100-SXM", 8)
    assert res.ttft_s[0] * 1e3 == pytest.approx(
        timing.prefill_ms(1600, 500**2 + 800**2 + 300**2))


def test_kv_cache_limits_admission_and_refuses_what_never_fits():
    # tp 2 on 80 GB GPUs leaves 0.9 x 160 - 140 = 4 GB: about 12,200 tokens of KV cache.
    svc = service(tp=2)
    res = simulate(svc, ONE_SITE, trace([0, 0, 0], [7000, 7000, 20_000], [100, 100, 10]),
                   "round-robin", 1)
    f = res.figures
    assert f["too_long"] == 1 and f["completed"] == 2
    first = sorted(res.ttft_s)
    assert first[1] > first[0] + 0.5  # the second waited for the first's cache to free


def test_residency_places_replicas_only_on_allowed_sites():
    fleet = load_fleet("nordic-federation")
    svc = service(residency={"countries": ["NO"]}, region="eu-central")
    res = simulate(svc, fleet, load_requests("azure-conv-sample").head(300), "slo-aware", 4)
    assert set(res.figures["replicas_started_by_site"]) == {"narvik", "kristiansand"}
    with pytest.raises(PlacementError, match="residency"):
        simulate(service(residency={"countries": ["FI"]}), fleet,
                 load_requests("azure-conv-sample").head(10))


def test_slo_aware_router_avoids_the_far_site():
    fleet = load_fleet("nordic-federation")
    svc = service(region="eu-north", slo={"ttft_ms": 150, "tpot_ms": 60, "percentile": 90})
    reqs = load_requests("azure-conv-sample").head(600)
    rr = simulate(svc, fleet, reqs, "round-robin", 5).figures
    slo = simulate(svc, fleet, reqs, "slo-aware", 5).figures
    assert slo["slo_attainment"] > rr["slo_attainment"]


def test_autoscaler_scales_up_under_a_burst_and_down_after_with_nothing_lost():
    svc = service(autoscale={"enabled": True, "target_queue": 4, "startup_s": 30,
                             "interval_s": 10, "cooldown_s": 30})
    burst = np.sort(np.random.default_rng(0).uniform(0, 120, 1200))
    res = simulate(svc, ONE_SITE, trace(burst, np.full(1200, 800), np.full(1200, 200)),
                   "least-outstanding", 1).figures
    assert res["replicas_peak"] > 3 and res["replicas_added"] >= 3
    assert res["replicas_removed"] >= 1
    assert res["completed"] == 1200 and res["refused"] == 0


requests_st = st.lists(st.tuples(st.floats(0, 5), st.integers(1, 4000), st.integers(1, 400)),
                       min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(rows=requests_st, n=st.integers(1, 4),
       router=st.sampled_from(["round-robin", "least-outstanding", "slo-aware"]))
def test_more_replicas_never_lower_attainment(rows, n, router):
    gaps, prompt, output = zip(*rows)
    reqs = trace(np.cumsum(gaps), prompt, output)
    svc = service(slo={"ttft_ms": 800, "tpot_ms": 45, "percentile": 90})
    fewer = simulate(svc, ONE_SITE, reqs, router, n).figures["slo_attainment"]
    more = simulate(svc, ONE_SITE, reqs, router, n + 1).figures["slo_attainment"]
    assert more >= fewer


@settings(max_examples=100, deadline=None)
@given(rows=requests_st, slower=st.floats(1.1, 4),
       router=st.sampled_from(["round-robin", "least-outstanding", "slo-aware"]))
def test_a_lower_rate_never_lowers_attainment_by_more_than_one_request(rows, slower, router):
    """Strictly monotone is false for any scheduler whose prefills stall running decodes
    (Sarathi-Serve's "generation stalls"). Hypothesis found: 3 requests at 0 s, one of 6
    tokens at 1 s, a 898-token prompt at 1.0625 s; at half the rate the long prompt lands on
    the replica decoding the 6-token answer and its prefill pushes that answer's time per
    token over the SLO. So: never more than one request's share lower (docs/inference.md)."""
    gaps, prompt, output = zip(*rows)
    reqs = trace(np.cumsum(gaps), prompt, output)
    svc = service(slo={"ttft_ms": 800, "tpot_ms": 45, "percentile": 90})
    fast = simulate(svc, ONE_SITE, reqs, router, 2).figures["slo_attainment"]
    slow = simulate(svc, ONE_SITE, reqs.scaled(1 / slower), router, 2).figures["slo_attainment"]
    assert slow >= fast - 1 / len(reqs) - 1e-9


@pytest.mark.parametrize("router", ["round-robin", "least-outstanding", "slo-aware"])
def test_on_the_azure_sample_attainment_rises_with_replicas_and_falls_with_rate(router):
    svc = service(slo={"ttft_ms": 1000, "tpot_ms": 45, "percentile": 90})
    reqs = load_requests("azure-conv-sample")
    grid = [[simulate(svc, ONE_SITE, reqs.scaled(rate), router, n).figures["slo_attainment"]
             for n in (1, 2, 3, 4, 6)] for rate in (4.0, 2.0, 1.0, 0.5)]
    a = np.array(grid)  # rows: falling rate; columns: more replicas
    assert (np.diff(a, axis=1) >= 0).all(), a
    assert (np.diff(a, axis=0) >= 0).all(), a
    assert a[0, 0] < 0.5 < a[-1, -1]  # the grid spans failing to meeting the SLO


def test_cli_simulate_prints_the_figures_and_rejects_bad_input():
    out = CliRunner().invoke(app, ["infer", "simulate", "--replicas", "2", "--rate-scale",
                                   "0.5", "--json"])
    assert out.exit_code == 0, out.output
    fig = json.loads(out.output)
    assert fig["requests"] == 2867 and fig["completed"] == 2867
    assert 0 < fig["slo_attainment"] <= 1
    assert fig["ttft_ms"]["p50"] <= fig["ttft_ms"]["p99"]
    assert fig["energy_wh_per_1k_tokens"] > 0 and fig["gpu_hours"] > 0
    bad = CliRunner().invoke(app, ["infer", "simulate", "--trace", "nope.csv"])
    assert bad.exit_code == 2 and "no such file" in bad.output
    bad = CliRunner().invoke(app, ["infer", "simulate", "--router", "random"])
    assert bad.exit_code == 2 and "slo-aware" in bad.output
    assert math.isfinite(fig["tpot_ms"]["p99"])


def test_cli_simulate_keeps_the_service_files_router_unless_told(tmp_path):
    """The CLI's default router used to win over the file's `router:`."""
    svc = tmp_path / "svc.yaml"
    svc.write_text("name: chat\nmodel: llama-2-70b\ngpu: H100-SXM\ntp: 8\n"
                   "router: round-robin\nslo: {ttft_ms: 2000, tpot_ms: 100}\n"
                   "replicas: {min: 1, max: 4, initial: 2}\n")
    figures = {}
    for extra in ([], ["--router", "least-outstanding"]):
        out = CliRunner().invoke(app, ["infer", "simulate", "--service", str(svc),
                                       "--rate-scale", "0.5", "--json", *extra])
        assert out.exit_code == 0, out.output
        figures[tuple(extra)] = json.loads(out.output)
    assert figures[()]["router"] == "round-robin"
    assert figures[("--router", "least-outstanding")]["router"] == "least-outstanding"
    plain = CliRunner().invoke(app, ["infer", "simulate", "--rate-scale", "0.5", "--json"])
    assert json.loads(plain.output)["router"] == "slo-aware"  # no file: the CLI's default


def test_replicas_share_the_fleet_with_training_and_preempt_spot_work():
    """One fleet, one scheduler: 128 GPUs busy with spot training; the service's replicas
    (a reserved tenant sized to its peak) start at once by preempting training."""
    import pyarrow as pa

    from kraft.infer.cosim import with_training
    from kraft.sim.traces.canonical import finish
    from kraft.spec.models import TenantsSpec

    svc = service(replicas={"min": 2, "max": 4},
                  autoscale={"enabled": True, "target_queue": 4, "startup_s": 30})
    burst = np.sort(np.random.default_rng(1).uniform(0, 300, 1500))
    res = simulate(svc, ONE_SITE, trace(burst, np.full(1500, 800), np.full(1500, 200)),
                   "least-outstanding")
    assert res.figures["replicas_peak"] >= 3
    n = 32  # 32 spot jobs of 4 GPUs for 2 h each, arriving in the first minute: a full fleet
    training = finish("spot-train", pa.table({
        "job_id": [f"t{i}" for i in range(n)], "submit_s": np.linspace(0, 60, n),
        "duration_s": np.full(n, 7200.0), "gpus": np.full(n, 4), "tenant": ["crowd"] * n}),
        "test", n, __import__("collections").Counter())
    out = with_training(svc, ONE_SITE, res, training, TenantsSpec(), at_s=600)
    alone, beside = out["training_alone"], out["training_beside_service"]
    assert alone["preemptions"] == 0
    assert out["replicas_started"] == out["replica_jobs"] == len(res.replica_spans)
    assert out["replica_wait_max_s"] == 0  # the reservation covers the peak: none waits
    assert beside["preemptions"] >= 2 * res.figures["replicas_peak"]  # 8 GPUs = 2 jobs each
    assert beside["jct_mean_h"] > alone["jct_mean_h"]
    assert beside["per_tier"]["spot"]["jobs"] == n


def test_with_training_example_shows_a_cost_or_says_why_not():
    """The documented example used to print two identical rows with no word why."""
    base = ["infer", "simulate", "--replicas", "8", "--autoscale",  # the bundled sample
            "--rate-scale", "16", "--with-training", "philly-sample"]
    quiet = CliRunner().invoke(app, [*base, "--at-hour", "720"])
    assert quiet.exit_code == 0, quiet.output
    assert "serving changed nothing for training" in " ".join(quiet.output.split())
    busy = CliRunner().invoke(app, [*base, "--training-load", "4", "--at-hour", "6", "--json"])
    assert busy.exit_code == 0, busy.output
    shared = json.loads(busy.output)["shared_fleet"]
    assert (shared["training_beside_service"]["preemptions"]
            > shared["training_alone"]["preemptions"])
