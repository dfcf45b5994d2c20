"""`kraft infer …`: the latency model and the request-level simulation of a service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from kraft.cliapp import command_group

infer_app = command_group("LLM inference: latency model and service simulation.")
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@infer_app.command()
def predict(
    model: Annotated[str, typer.Option(help="built-in model: kraft infer models")] = "llama-2-70b",
    gpu: Annotated[str, typer.Option(help="GPU model from the catalog")] = "H100-SXM",
    tp: Annotated[int, typer.Option(min=1, max=64, help="tensor-parallel GPUs")] = 8,
    batch: Annotated[int, typer.Option(min=1, max=4096)] = 16,
    prompt: Annotated[int, typer.Option(min=1, max=1_000_000, help="prompt tokens")] = 1024,
    output: Annotated[int, typer.Option(min=1, max=1_000_000, help="output tokens")] = 128,
    engine_overhead_ms: Annotated[float, typer.Option(
        min=0, help="the serving engine's own time per iteration (0: kernels only)")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Prefill time, decode time per token and throughput of one replica, beside the
    hardware's floor."""
    from kraft.catalog import CATALOG
    from kraft.infer.latency import MODELS
    from kraft.infer.latency import predict as predict_latency

    if model not in MODELS:
        _fail(f"--model {model!r}: one of {', '.join(MODELS)}")
    if gpu not in CATALOG:
        _fail(f"--gpu {gpu!r}: one of {', '.join(CATALOG)}")
    out = predict_latency(model, gpu, tp, batch, prompt, output, engine_overhead_ms)
    if as_json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
        return
    console.print(f"{model} on {tp} x {gpu}, batch {batch}, prompt {prompt}: prefill "
                  f"{out['prefill_ms']:.1f} ms, decode {out['decode_ms_per_token']:.2f} ms per "
                  f"token, {out['tokens_per_s']:,.0f} tokens/s (floor: prefill "
                  f"{out['roofline_prefill_ms']:.1f} ms, decode "
                  f"{out['roofline_decode_ms_per_token']:.2f} ms)", highlight=False)


@infer_app.command()
def calibration(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The latency model's error: held out per profiled model, and end to end against
    SplitwiseSim."""
    from kraft.infer.calibration import held_out_error, splitwise_error

    held, splitwise = held_out_error(), splitwise_error()
    if as_json:
        print(json.dumps({"held_out": held, "splitwise": splitwise}))
        return
    table = Table(title="Layer time, each model held out of its GPU's fit (Vidur)",
                  title_justify="left")
    for col in ("GPU", "model", "B params", "rows", "median error", "batch-1 error"):
        table.add_column(col, justify="left" if col in ("GPU", "model") else "right")
    for r in held:
        table.add_row(r["gpu"], r["model"], f"{r['params_b']:.1f}", str(r["rows"]),
                      f"{r['median_error']:.1%}", f"{r['batch_1_error']:.1%}")
    console.print(table)
    table = Table(title="End to end against SplitwiseSim's engine", title_justify="left")
    for col in ("model", "phase", "rows", "median error", "engine ms", "error with it"):
        table.add_column(col, justify="left" if col in ("model", "phase") else "right")
    for r in splitwise:
        table.add_row(r["model"], r["phase"], str(r["rows"]), f"{r['median_error']:.1%}",
                      f"{r['engine_overhead_ms']:.1f}", f"{r['median_error_with_overhead']:.1%}")
    console.print(table)


@infer_app.command()
def models() -> None:
    """The built-in models and their figures."""
    from kraft.infer.latency import MODELS

    for m in MODELS.values():
        console.print(f"{m.name}: {m.params / 1e9:g} B parameters, {m.layers} layers, width "
                      f"{m.hidden}, KV {m.kv_bytes_per_token:,.0f} B/token")


@infer_app.command()
def simulate(
    service: Annotated[Optional[Path], typer.Option(
        help="InferenceService YAML; without it, one is built from the options below")] = None,
    trace: Annotated[str, typer.Option(
        help="azure-conv-sample (bundled), azure-conv, azure-code, mooncake-conversation, "
             "mooncake-synthetic, or a .csv/.jsonl file")] = "azure-conv-sample",
    fleet: Annotated[str, typer.Option(help="bundled fleet name or YAML")] = "nordic-federation",
    model: Annotated[str, typer.Option(help="a built-in model")] = "llama-2-70b",
    gpu: Annotated[str, typer.Option()] = "H100-SXM",
    tp: Annotated[int, typer.Option(min=1, max=72)] = 8,
    ttft_ms: Annotated[float, typer.Option(min=1)] = 2000.0,
    tpot_ms: Annotated[float, typer.Option(min=1)] = 100.0,
    percentile: Annotated[float, typer.Option(min=1, max=100)] = 99.0,
    region: Annotated[str, typer.Option(help="the users' region (fleet latency_ms keys)")] =
    "eu-north",
    replicas: Annotated[Optional[int], typer.Option(
        min=1, help="replicas (at start); default: the service's, or 4")] = None,
    max_replicas: Annotated[int, typer.Option(min=1, help="autoscaler's bound")] = 64,
    autoscale: Annotated[bool, typer.Option(help="scale replicas with load")] = False,
    router: Annotated[Optional[str], typer.Option(
        help="round-robin, least-outstanding or slo-aware (default: the service file's, else "
             "slo-aware)")] = None,
    rate_scale: Annotated[float, typer.Option(min=0.001, help="arrivals X times as fast")] = 1.0,
    data_dir: Annotated[Optional[Path], typer.Option(
        "--shared-data", envvar="KRAFT_DATA_DIR",
        help="the shared data folder holding inference/ and traces/")] = None,
    with_training: Annotated[Optional[str], typer.Option(
        help="also replay this training trace on the same fleet, the replicas as a reserved "
             "tenant's jobs: what serving costs training (docs/inference.md)")] = None,
    training_tenants: Annotated[Optional[str], typer.Option(
        help="tenants of the training trace (default: the fleet's bundled ones)")] = None,
    training_load: Annotated[Optional[float], typer.Option(
        min=0.01, help="compress training arrivals to this offered load")] = None,
    at_hour: Annotated[float, typer.Option(
        min=0, help="the service's first request, hours into the training replay")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Simulate a service on a request trace: SLO attainment, TTFT and TPOT percentiles,
    GPU-hours, energy and carbon per 1,000 tokens."""
    from pydantic import ValidationError

    from kraft.cli import _data_dir
    from kraft.infer.requests import RequestTraceError, load_requests
    from kraft.infer.routing import ROUTERS
    from kraft.infer.sim import PlacementError
    from kraft.infer.sim import simulate as run
    from kraft.spec.inference import InferenceServiceSpec
    from kraft.spec.load import SpecError, format_validation_error, load_fleet, load_yaml

    if router is not None and router not in ROUTERS:
        _fail(f"--router {router!r}: one of {', '.join(ROUTERS)}")
    try:
        fleet_spec = load_fleet(fleet)
        if service is not None:  # the file's values hold where no option is given
            spec = load_yaml(service, InferenceServiceSpec)
        else:
            spec = InferenceServiceSpec(
                name=f"{model}-tp{tp}", model=model, gpu=gpu, tp=tp, region=region,
                slo={"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "percentile": percentile},
                replicas={"min": 1, "max": max_replicas, "initial": replicas or 4},
                router=router or "slo-aware")
        router = router or spec.router
        requests = load_requests(trace, _data_dir(data_dir))
        if rate_scale != 1.0:
            requests = requests.scaled(rate_scale)
        with console.status(f"simulating {len(requests):,} requests"):
            result = run(spec, fleet_spec, requests, router, replicas, autoscale or None)
        shared = None
        if with_training:
            from kraft.infer.cosim import with_training as cosim
            from kraft.sim.traces.registry import load_trace
            from kraft.spec.load import load_tenants

            train = load_trace(with_training, _data_dir(data_dir))
            tenants = load_tenants(training_tenants or fleet)
            with console.status(f"replaying {train.n_jobs:,} training jobs, with and without "
                                "the service"):
                shared = cosim(spec, fleet_spec, result, train, tenants,
                               load=training_load, at_s=at_hour * 3600)
    except ValidationError as e:
        _fail(format_validation_error("options", e))
    except (SpecError, RequestTraceError, PlacementError, ValueError) as e:
        _fail(str(e))
    f = result.figures
    if as_json:
        print(json.dumps({**f, "shared_fleet": shared} if shared else f))
        return
    table = Table(title=f"{f['service']} on {f['trace']} ({f['requests']:,} requests, "
                        f"{f['router']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("SLO attainment", f"{f['slo_attainment']:.2%} ({'met' if f['slo_met'] else 'MISSED'}"
                           f" at p{spec.slo.percentile:g})"),
        ("TTFT p50 / p90 / p99 ms", " / ".join(f"{v:,.0f}" for v in f["ttft_ms"].values())),
        ("TPOT p50 / p90 / p99 ms", " / ".join(f"{v:,.1f}" for v in f["tpot_ms"].values())),
        ("refused (residency) / too long", f"{f['refused']} / {f['too_long']}"),
        ("replicas start / peak", f"{f['replicas_start']} / {f['replicas_peak']}"),
        ("replicas added / removed", f"{f['replicas_added']} / {f['replicas_removed']}"),
        ("GPU-hours", f"{f['gpu_hours']:,.1f}"),
        ("energy kWh (facility)", f"{f['energy_kwh']:,.1f}"),
        ("Wh per 1,000 tokens", f"{f['energy_wh_per_1k_tokens']:.2f}"),
        ("gCO2e per 1,000 tokens (location)",
         "n/a" if f["carbon_g_per_1k_tokens_location"] is None
         else f"{f['carbon_g_per_1k_tokens_location']:.3f}"),
        ("simulated in", f"{f['sim_wall_s']:.2f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if shared:
        t = Table(title=f"training ({with_training}) on the same fleet, with replicas as a "
                        f"reserved tenant ({shared['replicas_started']} replica jobs, longest "
                        f"wait {shared['replica_wait_max_s']:.0f} s)")
        for col in ("", "jobs", "mean JCT h", "preemptions", "lost GPU-h"):
            t.add_column(col, justify="right" if col else "left")
        for label, key in (("training alone", "training_alone"),
                           ("beside the service", "training_beside_service")):
            x = shared[key]
            t.add_row(label, f"{x['jobs']:,}", f"{x['jct_mean_h']:.3f}", f"{x['preemptions']:,}",
                      f"{x['lost_gpu_hours']:,.1f}")
        console.print(t)
        if shared["training_alone"] == shared["training_beside_service"]:
            console.print(
                f"serving changed nothing for training: the service reserved up to "
                f"{shared['service_peak_gpus']:,} GPUs and used {shared['service_gpu_hours']:,.1f}"
                f" GPU-hours over {shared['service_hours']:.2f} h from hour {at_hour:g}, of "
                f"{shared['fleet_gpus']:,}, and training's jobs found GPUs free then. Serve "
                f"while training fills the fleet (a higher --training-load, an --at-hour "
                f"inside its arrivals) to see the cost; docs/inference.md", highlight=False)
