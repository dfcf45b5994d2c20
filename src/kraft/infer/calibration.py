"""The latency model's calibration (kraft.infer.latency) on measured data, and its errors.

- One layer's time per GPU: `compute x FLOP time + memory x byte time + overhead_ms`, fitted
  on Vidur's per-operator timings of Llama-2-7B/70B, Llama-3-8B/70B, CodeLlama-34B and phi-2
  on DGX-H100 and DGX-A100 at TP 1-8 and 1-4,096 tokens (data/inference/vidur-layers.csv).
- One all-reduce per GPU node and TP: `latency_ms + size x ms_per_byte`, fitted on Vidur's
  measured all-reduces of 2 kB to 32 MB (data/inference/vidur-all-reduce.csv).
- Held-out error per model: each model's layers predicted by a fit on the other models.
- End to end against SplitwiseSim's measurements (data/inference/perf_model.csv): another
  engine, and BLOOM-176B, which Vidur did not profile.

A GPU Vidur did not profile takes the H100's efficiency factors if it has FP8 (Hopper and
later), else the A100's, with its own peak figures and NVLink bandwidth.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np

from kraft.catalog import CATALOG
from kraft.infer.latency import MODELS, LlmModel, ReplicaTiming, activation_bytes, roofline_ms

VIDUR_GPUS = {"h100": "H100-SXM", "a100": "A100"}
VIDUR_NODES = {"h100": "h100_dgx", "a100": "a100_dgx"}
SPLITWISE_MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
SPLITWISE_GPUS = {"a100-80gb": "A100", "h100-80gb": "H100-SXM"}  # power-capped rows left out


@dataclass(frozen=True)
class LayerFit:
    compute: float  # x the FLOP time at peak, >= 1
    memory: float  # x the byte time at full bandwidth, >= 1
    overhead_ms: float  # per layer: kernel launches


@dataclass(frozen=True)
class AllReduceFit:
    latency_ms: float
    ms_per_byte: float


def bounded_fit(cols: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Least squares of `cols @ coef = 1` with coef >= lower: the unconstrained fit, else the
    best with some terms pinned at their bound (2^n cases, n <= 3). Rows are already divided
    by the measured time, so this minimises relative error (times span three decades)."""
    ones = np.ones(len(cols))
    best, best_cost = lower, np.inf
    for pinned in itertools.product([False, True], repeat=len(lower)):
        pin = np.array(pinned)
        coef = lower.astype(float).copy()
        if (~pin).any():
            coef[~pin] = np.linalg.lstsq(cols[:, ~pin], ones - cols[:, pin] @ lower[pin],
                                         rcond=None)[0]
        cost = float(np.sum((cols @ coef - 1) ** 2))
        if (coef >= lower - 1e-12).all() and cost < best_cost:
            best, best_cost = coef, cost
    return best


def _csv(name: str) -> list[dict]:
    return list(csv.DictReader(files("kraft.data.inference").joinpath(name).open()))


@cache
def vidur_layers() -> dict[str, np.ndarray]:
    """Per measured (GPU, model, TP, tokens): the layer's FLOP time and byte time at the GPU's
    peak, and the measured time, in ms."""
    out = {k: [] for k in ("gpu", "model", "params_b", "tp", "tokens", "flop_ms", "byte_ms",
                           "layer_ms")}
    for r in _csv("vidur-layers.csv"):
        g = CATALOG[VIDUR_GPUS[r["gpu"]]]
        h, ff, tp, tokens = (int(r[k]) for k in ("n_embd", "n_expanded_embd", "tp", "tokens"))
        kv_share = int(r["n_kv_head"]) / int(r["n_head"])
        # Q and output projections h x h, K and V h x h x kv_share; the MLP 2 or 3 h x ff.
        params = 2 * h * h * (1 + kv_share) + (3 if r["use_gated_mlp"] == "True" else 2) * h * ff
        out["gpu"].append(r["gpu"])
        out["model"].append(r["model"])
        out["params_b"].append((int(r["layers"]) * params + 2 * int(r["vocab_size"]) * h) / 1e9)
        out["tp"].append(tp)
        out["tokens"].append(tokens)
        out["flop_ms"].append(2 * params * tokens / tp / g.bf16_flops * 1e3)
        out["byte_ms"].append((2 * params / tp + tokens * activation_bytes(h, 2))
                              / (g.hbm_bandwidth_tbps * 1e12) * 1e3)
        out["layer_ms"].append(float(r["layer_ms"]))
    return {k: np.array(v) for k, v in out.items()}


def _fit_layers(keep: np.ndarray) -> LayerFit:
    m = vidur_layers()
    w = 1 / m["layer_ms"][keep]
    cols = np.c_[m["flop_ms"][keep] * w, m["byte_ms"][keep] * w, w]
    return LayerFit(*(float(c) for c in bounded_fit(cols, np.array([1.0, 1.0, 0.0]))))


def _family(gpu: str) -> str:
    for family, name in VIDUR_GPUS.items():
        if name == gpu:
            return family
    return "h100" if CATALOG[gpu].fp8_flops else "a100"


@cache
def layer_fit(gpu: str) -> LayerFit:
    return _fit_layers(vidur_layers()["gpu"] == _family(gpu))


@cache
def all_reduce_fit(gpu: str, tp: int) -> AllReduceFit:
    """Fitted on DGX-H100 at the measured TP at or above `tp` (the largest beyond it); other
    GPUs scale the bandwidth term by their NVLink figure. Vidur's DGX-A100 all-reduces are
    left out: they move 11-20 GB/s (8 MB in 0.78 ms at TP 2), a thirtieth of A100's NVLink,
    and SplitwiseSim's A100 prefills at TP 2-8 are faster than they would allow."""
    family = "h100"
    rows = [r for r in _csv("vidur-all-reduce.csv") if r["node"] == VIDUR_NODES[family]]
    measured = sorted({int(r["workers"]) for r in rows})
    workers = next((n for n in measured if n >= tp), measured[-1])
    rows = [r for r in rows if int(r["workers"]) == workers]
    size = np.array([float(r["size_bytes"]) for r in rows])
    ms = np.array([float(r["all_reduce_ms"]) for r in rows])
    latency, per_byte = bounded_fit(np.c_[1 / ms, size / ms], np.zeros(2))
    scale = CATALOG[VIDUR_GPUS[family]].interconnect_gbps / CATALOG[gpu].interconnect_gbps
    return AllReduceFit(float(latency), float(per_byte * scale))


def held_out_error() -> list[dict]:
    """Per profiled (GPU, model): the median absolute relative error of its layer times
    predicted by a fit on the GPU's other models, over every TP and token count, and at one
    token (batch-1 decode)."""
    m = vidur_layers()
    out = []
    for gpu, model in dict.fromkeys(zip(m["gpu"], m["model"])):
        this = (m["gpu"] == gpu) & (m["model"] == model)
        fit = _fit_layers((m["gpu"] == gpu) & ~this)
        pred = fit.compute * m["flop_ms"] + fit.memory * m["byte_ms"] + fit.overhead_ms
        err = np.abs(pred / m["layer_ms"] - 1)
        name = str(model).replace("Meta-", "").replace("-Instruct", "").removesuffix("-hf")
        out.append({"gpu": VIDUR_GPUS[str(gpu)], "model": name,
                    "params_b": round(float(m["params_b"][this][0]), 1),
                    "rows": int(this.sum()), "median_error": float(np.median(err[this])),
                    "batch_1_error": float(np.median(err[this & (m["tokens"] == 1)]))})
    return out


@cache
def splitwise() -> dict[str, np.ndarray]:
    """SplitwiseSim's rows beside this model's predictions (no engine overhead). 10 of the 840
    rows (Llama-2-70B, TP 2, batch 64, prompt 512) report a prefill faster than the GPUs' peak
    FLOP/s allows for 64 x 512 tokens: measurement anomalies, left out."""
    out = {k: [] for k in ("model", "prefill_ms", "decode_ms", "prefill_pred", "decode_pred")}
    for r in _csv("perf_model.csv"):
        if r["hardware"] not in SPLITWISE_GPUS:
            continue
        model: LlmModel = MODELS[SPLITWISE_MODELS[r["model"]]]
        gpu = SPLITWISE_GPUS[r["hardware"]]
        tp, batch, prompt = (int(r[k]) for k in ("tensor_parallel", "batch_size", "prompt_size"))
        context = prompt + int(r["token_size"]) / 2
        if float(r["prompt_time"]) < roofline_ms(model, gpu, tp, batch, prompt, context)[0]:
            continue
        timing = ReplicaTiming(model, gpu, tp)
        out["model"].append(model.name)
        out["prefill_ms"].append(float(r["prompt_time"]))
        out["decode_ms"].append(float(r["token_time"]))
        out["prefill_pred"].append(timing.prefill_ms(batch * prompt, batch * prompt ** 2))
        out["decode_pred"].append(timing.decode_ms(batch, batch * context))
    return {k: np.array(v) for k, v in out.items()}


def splitwise_error() -> list[dict]:
    """Per model and phase: the median error against SplitwiseSim as predicted, that engine's
    own time per iteration (the median of measured - predicted), and the error with it."""
    s = splitwise()
    out = []
    for model in dict.fromkeys(s["model"]):
        for phase in ("prefill", "decode"):
            k = s["model"] == model
            measured, pred = s[f"{phase}_ms"][k], s[f"{phase}_pred"][k]
            overhead = max(0.0, float(np.median(measured - pred)))
            out.append({"model": str(model), "phase": phase, "rows": int(k.sum()),
                        "median_error": float(np.median(np.abs(pred / measured - 1))),
                        "engine_overhead_ms": overhead,
                        "median_error_with_overhead": float(np.median(
                            np.abs((pred + overhead) / measured - 1)))})
    return out
