"""LLM inference latency: a roofline from the GPU catalog, calibrated on measured data.

Prefill is bound by compute (2 FLOP per parameter per prompt token, plus attention's
quadratic term), decode by memory bandwidth (every iteration reads the weights once and each
sequence's KV cache). A replica with tensor parallelism TP splits both across TP GPUs, and pays
two all-reduces of the activations per layer over the GPUs' interconnect. The roofline is the
physical limit; the measured time is fitted as
`slope * roofline + comm_factor * all_reduce + overhead_ms` with slope >= 1 and the others
>= 0, one fit per phase, on SplitwiseSim's measurements (data/inference/perf_model.csv), so a
prediction is never faster than the hardware allows.
"""

from __future__ import annotations

import csv
import itertools
import zlib
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
    hidden: int  # model width: activations per token per layer
    kv_bytes_per_token: float  # K and V, all layers, at the model's dtype


# KV bytes per token = 2 (K, V) x layers x KV heads x head dim x bytes.
MODELS = {m.name: m for m in [
    # Llama 2 70B (Touvron et al. 2023, Table 1 and config.json): 80 layers, width 8,192, GQA
    # with 8 KV heads of dim 128 -> 2 x 80 x 8 x 128 x 2 B = 327,680 B per token.
    LlmModel("llama-2-70b", 70e9, 2, 80, 8192, 2 * 80 * 8 * 128 * 2),
    # Llama 3.1 8B (Meta model card, config.json): 32 layers, width 4,096, 8 KV heads of 128.
    LlmModel("llama-3.1-8b", 8.03e9, 2, 32, 4096, 2 * 32 * 8 * 128 * 2),
    # BLOOM 176B (BigScience 2022, config.json): 70 layers, width 14,336 = 112 heads of dim
    # 128, no GQA.
    LlmModel("bloom-176b", 176e9, 2, 70, 14336, 2 * 70 * 112 * 128 * 2),
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
    # Causal attention: QK^T and AV, 2 x 2 FLOP per (query, key) pair per width, half the pairs.
    attention = 2 * model.layers * model.hidden * batch * prompt * prompt
    prefill = max((2 * model.params * batch * prompt + attention) / flops,
                  weights / bandwidth)
    decode = max(2 * model.params * batch / flops,
                 (weights + batch * context * model.kv_bytes_per_token) / bandwidth)
    return prefill * 1e3, decode * 1e3


def all_reduce_ms(model: LlmModel, gpu: str, tp: int, tokens: float) -> float:
    """Megatron-style tensor parallelism all-reduces the activations twice per layer; a ring
    all-reduce sends 2 (TP-1)/TP of the data each way at half the data sheet's two-way
    figure."""
    if tp == 1:
        return 0.0
    data = 2 * model.layers * tokens * model.hidden * model.bytes_per_param
    one_way = CATALOG[gpu].interconnect_gbps * 1e9 / 2
    return data * 2 * (tp - 1) / tp / one_way * 1e3


@dataclass(frozen=True)
class Fit:
    slope: float
    comm_factor: float
    overhead_ms: float

    def __call__(self, roofline, all_reduce=0.0):
        return self.slope * roofline + self.comm_factor * all_reduce + self.overhead_ms


def _fit(roof: np.ndarray, comm: np.ndarray, measured: np.ndarray) -> Fit:
    """Least squares on relative error (rows divided by the measured time, since times span
    three orders of magnitude), with slope >= 1 and the other terms >= 0: the unconstrained
    fit, else the best fit with some terms pinned at their bound (3 terms, 8 cases)."""
    w = 1.0 / measured
    cols = np.c_[roof * w, comm * w, w]
    lower = np.array([1.0, 0.0, 0.0])
    best, best_cost = lower, np.inf
    for pinned in itertools.product([False, True], repeat=3):
        pin = np.array(pinned)
        coef = lower.copy()
        rest = np.ones_like(measured) - cols[:, pin] @ lower[pin]
        if (~pin).any():
            coef[~pin] = np.linalg.lstsq(cols[:, ~pin], rest, rcond=None)[0]
        cost = float(np.sum((cols @ coef - 1) ** 2))
        if (coef >= lower - 1e-12).all() and cost < best_cost:
            best, best_cost = coef, cost
    return Fit(float(best[0]), float(best[1]), float(best[2]))


@cache
def measured() -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(files("kraft.data.inference").joinpath("perf_model.csv")
                               .open()))
    rows = [r for r in rows if r["hardware"] in MEASURED_GPUS]
    # 10 of the 840 rows (Llama-2-70B, TP 2, batch 64, prompt 512) report a prefill faster than
    # the GPUs' peak FLOP/s allows for 64 x 512 tokens: measurement anomalies, left out below.
    cols = {k: [] for k in ("prefill_roof", "decode_roof", "prefill_comm", "decode_comm",
                            "prefill_ms", "decode_ms", "config")}
    for r in rows:
        model, gpu = MODELS[MEASURED_NAMES[r["model"]]], MEASURED_GPUS[r["hardware"]]
        prompt, tokens = int(r["prompt_size"]), int(r["token_size"])
        tp, batch = int(r["tensor_parallel"]), int(r["batch_size"])
        p, d = roofline_ms(model, gpu, tp, batch, prompt, prompt + tokens / 2)
        if float(r["prompt_time"]) < p:
            continue
        cols["prefill_roof"].append(p)
        cols["decode_roof"].append(d)
        cols["prefill_comm"].append(all_reduce_ms(model, gpu, tp, batch * prompt))
        cols["decode_comm"].append(all_reduce_ms(model, gpu, tp, batch))
        cols["prefill_ms"].append(float(r["prompt_time"]))
        cols["decode_ms"].append(float(r["token_time"]))
        config = ",".join(r[k] for k in ("model", "hardware", "tensor_parallel", "batch_size",
                                         "prompt_size"))
        cols["config"].append(zlib.crc32(config.encode()) % 5)  # stable across runs
    return {k: np.array(v) for k, v in cols.items()}


@cache
def calibration(held_out: int | None = None) -> tuple[Fit, Fit]:
    """Fits on every row, or on all but the configurations of fold `held_out` (0-4)."""
    m = measured()
    keep = np.ones(len(m["config"]), bool) if held_out is None else m["config"] != held_out
    return tuple(_fit(m[f"{phase}_roof"][keep], m[f"{phase}_comm"][keep], m[f"{phase}_ms"][keep])
                 for phase in ("prefill", "decode"))


def held_out_error() -> dict[str, float]:
    """Median absolute relative error on held-out configurations (5 folds)."""
    m = measured()
    errs = {"prefill": [], "decode": []}
    for fold in range(5):
        test = m["config"] == fold
        for phase, fit in zip(errs, calibration(fold)):
            pred = fit(m[f"{phase}_roof"][test], m[f"{phase}_comm"][test])
            errs[phase] += list(abs(pred / m[f"{phase}_ms"][test] - 1))
    return {k: float(np.median(v)) for k, v in errs.items()}


def predict(model: str, gpu: str, tp: int, batch: int, prompt: int,
            output_tokens: int = 128) -> dict[str, float]:
    m = MODELS[model]
    roof_p, roof_d = roofline_ms(m, gpu, tp, batch, prompt, prompt + output_tokens / 2)
    timing = ReplicaTiming(m, gpu, tp)
    prefill = timing.prefill_ms(batch * prompt, batch * prompt * prompt)
    decode = timing.decode_ms(batch, batch * (prompt + output_tokens / 2))
    return {"prefill_ms": prefill, "decode_ms_per_token": decode,
            "tokens_per_s": batch * 1e3 / decode,
            "roofline_prefill_ms": roof_p, "roofline_decode_ms_per_token": roof_d}


# vLLM's default gpu_memory_utilization: the share of HBM the engine may use.
HBM_USABLE_SHARE = 0.9


def llm_model(model) -> LlmModel:
    """A built-in name, or a spec's LlmModelSpec (kraft.spec.inference)."""
    if isinstance(model, str):
        return MODELS[model]
    from kraft.spec.inference import DTYPE_BYTES

    return LlmModel(model.name, model.params_b * 1e9, DTYPE_BYTES[model.dtype], model.layers,
                    model.hidden, model.kv_bytes_per_token)


def kv_capacity_tokens(model: LlmModel, gpu: str, tp: int) -> int:
    """Tokens of KV cache a replica holds beside its weights."""
    free = HBM_USABLE_SHARE * CATALOG[gpu].hbm_gb * 1e9 * tp - model.params * model.bytes_per_param
    return int(free // model.kv_bytes_per_token)


class ReplicaTiming:
    """The calibrated model, specialised to one replica shape, for the request simulator's
    hot loop: a prefill of several prompts, and a decode iteration of a batch."""

    def __init__(self, model: LlmModel, gpu: str, tp: int):
        g = CATALOG[gpu]
        self.flops = g.bf16_flops * tp
        self.bandwidth = g.hbm_bandwidth_tbps * 1e12 * tp
        self.weights = model.params * model.bytes_per_param
        self.model, self.gpu, self.tp = model, gpu, tp
        self.comm_ms_per_token = all_reduce_ms(model, gpu, tp, 1.0)
        self.prefill_fit, self.decode_fit = calibration()

    def prefill_ms(self, tokens: float, tokens_squared: float) -> float:
        """Prefill of prompts with `tokens` in all and `tokens_squared` = sum of squares."""
        m = self.model
        roof = max((2 * m.params * tokens + 2 * m.layers * m.hidden * tokens_squared)
                   / self.flops, self.weights / self.bandwidth) * 1e3
        return self.prefill_fit(roof, self.comm_ms_per_token * tokens)

    def decode_ms(self, batch: int, context_tokens: float) -> float:
        """One decode iteration of `batch` sequences holding `context_tokens` in all."""
        m = self.model
        roof = max(2 * m.params * batch / self.flops,
                   (self.weights + context_tokens * m.kv_bytes_per_token) / self.bandwidth) * 1e3
        return self.decode_fit(roof, self.comm_ms_per_token * batch)
