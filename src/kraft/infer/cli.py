"""`kraft infer …`: inference services (so far: the latency model)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

infer_app = typer.Typer(help="LLM inference: latency model.", no_args_is_help=True)
console = Console()


@infer_app.command()
def predict(
    model: Annotated[str, typer.Option(help="llama-2-70b or bloom-176b")] = "llama-2-70b",
    gpu: Annotated[str, typer.Option(help="GPU model from the catalog")] = "H100-SXM",
    tp: Annotated[int, typer.Option(min=1, max=64, help="tensor-parallel GPUs")] = 8,
    batch: Annotated[int, typer.Option(min=1, max=4096)] = 16,
    prompt: Annotated[int, typer.Option(min=1, max=1_000_000, help="prompt tokens")] = 1024,
    output: Annotated[int, typer.Option(min=1, max=1_000_000, help="output tokens")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Prefill time, decode time per token and throughput of one replica."""
    from kraft.catalog import CATALOG
    from kraft.infer.latency import MODELS
    from kraft.infer.latency import predict as predict_latency

    if model not in MODELS:
        console.print(f"[bold red]error:[/] --model {model!r}: one of {', '.join(MODELS)}")
        raise typer.Exit(2)
    if gpu not in CATALOG:
        console.print(f"[bold red]error:[/] --gpu {gpu!r}: one of {', '.join(CATALOG)}")
        raise typer.Exit(2)
    out = predict_latency(model, gpu, tp, batch, prompt, output)
    if as_json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
        return
    console.print(f"{model} on {tp} x {gpu}, batch {batch}, prompt {prompt}: prefill "
                  f"{out['prefill_ms']:.1f} ms, decode {out['decode_ms_per_token']:.2f} ms per "
                  f"token, {out['tokens_per_s']:,.0f} tokens/s")
