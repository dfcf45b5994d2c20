"""LLM inference latency: a roofline from the GPU catalog, calibrated on measured data.

Prefill is bound by compute (2 FLOP per parameter per prompt token), decode by memory
bandwidth (every iteration reads the weights once and each sequence's KV cache). A replica
with tensor parallelism TP splits both across TP GPUs. The roofline is the physical limit; the
measured time is fitted as `slope * roofline + overhead_ms` with slope >= 1 and overhead >= 0,
one fit per phase, on SplitwiseSim's measurements (data/inference/perf_model.csv), so a
prediction is never faster than the hardware allows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np

from kraft.catalog import CATALOG


@dataclass(frozen=True)
class LlmModel:
    name: str
    params: float
    bytes_per_param: float  # 2 for FP16/BF16
    layers: int
    kv_bytes_per_token: float  # K and V, all layers, at the model's dtype


# KV bytes per token = 2 (K, V) x layers x KV heads x head dim x bytes.
MODELS = {m.name: m for m in [
    # Llama 2 70B (Touvron et al. 2023, Table 1 and config.json): 80 layers, GQA with 8 KV
    # heads of dim 128 -> 2 x 80 x 8 x 128 x 2 B = 327,680 B per token.
    LlmModel("llama-2-70b", 70e9, 2, 80, 2 * 80 * 8 * 128 * 2),
    # BLOOM 176B (BigScience 2022, config.json): 70 layers, 112 heads of dim 128, no GQA.
    LlmModel("bloom-176b", 176e9, 2, 70, 2 * 70 * 112 * 128 * 2),
]}
MEASURED_NAMES = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
MEASURED_GPUS = {"a100-80gb": "A100", "h100-80gb": "H100-SXM"}  # pcap rows left out


def roofline_ms(model: LlmModel, gpu: str, tp: int, batch: int, prompt: int,
                context: float) -> tuple[float, float]:
    """(prefill of `batch` prompts, one decode iteration of `batch` sequences) at the
    hardware's limit, in ms."""
    g = CATALOG[gpu]
    flops = g.bf16_flops * tp
    bandwidth = g.hbm_bandwidth_tbps * 1e12 * tp
    weights = model.params * model.bytes_per_param
    prefill = max(2 * model.params * batch * prompt / flops, weights / bandwidth)
    decode = max(2 * model.params * batch / flops,
                 (weights + batch * context * model.kv_bytes_per_token) / bandwidth)
    return prefill * 1e3, decode * 1e3


@dataclass(frozen=True)
class Fit:
    slope: float
    overhead_ms: float

    def __call__(self, roofline: np.ndarray | float):
        return self.slope * roofline + self.overhead_ms


def _fit(roof: np.ndarray, measured: np.ndarray) -> Fit:
    """Least squares on relative error (rows divided by the measured time), since times span
    three orders of magnitude."""
    w = 1.0 / measured
    a, b = np.linalg.lstsq(np.c_[roof * w, w], np.ones_like(measured), rcond=None)[0]
    if a < 1.0:  # never faster than the roofline
        a = 1.0
        b = float(np.median(measured - roof))
    return Fit(float(a), max(0.0, float(b)))


@cache
def measured() -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(files("kraft.data.inference").joinpath("perf_model.csv")
                               .open()))
    rows = [r for r in rows if r["hardware"] in MEASURED_GPUS]
    # 10 of the 840 rows (Llama-2-70B, TP 2, batch 64, prompt 512) report a prefill faster than
    # the GPUs' peak FLOP/s allows for 64 x 512 tokens: measurement anomalies, left out below.
    cols = {k: [] for k in ("prefill_roof", "decode_roof", "prefill_ms", "decode_ms", "config")}
    for r in rows:
        model = MODELS[MEASURED_NAMES[r["model"]]]
        prompt, tokens = int(r["prompt_size"]), int(r["token_size"])
        p, d = roofline_ms(model, MEASURED_GPUS[r["hardware"]], int(r["tensor_parallel"]),
                           int(r["batch_size"]), prompt, prompt + tokens / 2)
        if float(r["prompt_time"]) < p:
            continue
        cols["prefill_roof"].append(p)
        cols["decode_roof"].append(d)
        cols["prefill_ms"].append(float(r["prompt_time"]))
        cols["decode_ms"].append(float(r["token_time"]))
        cols["config"].append(hash((r["model"], r["hardware"], r["tensor_parallel"],
                                    r["batch_size"], r["prompt_size"])) % 5)
    return {k: np.array(v) for k, v in cols.items()}


@cache
def calibration(held_out: int | None = None) -> tuple[Fit, Fit]:
    """Fits on every row, or on all but the configurations of fold `held_out` (0-4)."""
    m = measured()
    keep = np.ones(len(m["config"]), bool) if held_out is None else m["config"] != held_out
    return (_fit(m["prefill_roof"][keep], m["prefill_ms"][keep]),
            _fit(m["decode_roof"][keep], m["decode_ms"][keep]))


def held_out_error() -> dict[str, float]:
    """Median absolute relative error on held-out configurations (5 folds)."""
    m = measured()
    errs = {"prefill": [], "decode": []}
    for fold in range(5):
        test = m["config"] == fold
        fp, fd = calibration(fold)
        errs["prefill"] += list(abs(fp(m["prefill_roof"][test]) / m["prefill_ms"][test] - 1))
        errs["decode"] += list(abs(fd(m["decode_roof"][test]) / m["decode_ms"][test] - 1))
    return {k: float(np.median(v)) for k, v in errs.items()}


def predict(model: str, gpu: str, tp: int, batch: int, prompt: int,
            output_tokens: int = 128) -> dict[str, float]:
    m = MODELS[model]
    roof_p, roof_d = roofline_ms(m, gpu, tp, batch, prompt, prompt + output_tokens / 2)
    fp, fd = calibration()
    prefill, decode = float(fp(roof_p)), float(fd(roof_d))
    return {"prefill_ms": prefill, "decode_ms_per_token": decode,
            "tokens_per_s": batch * 1e3 / decode,
            "roofline_prefill_ms": roof_p, "roofline_decode_ms_per_token": roof_d}
