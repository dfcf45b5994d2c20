"""LLM inference latency: a roofline from the GPU catalog, calibrated on measured kernels.

Prefill is bound by compute (2 FLOP per parameter per prompt token, plus attention's
quadratic term), decode by memory bandwidth (every iteration reads the weights once and each
sequence's KV cache). A replica with tensor parallelism TP splits both across TP GPUs, and pays
two all-reduces of the activations per layer.

An iteration is built from its parts, as Vidur (MLSys 2024) builds it: `layers` x the time of
one layer's linear operators, plus attention, plus the all-reduces, plus the serving engine's
own time per iteration. One layer's time is `compute x its FLOP time + memory x its byte time
+ overhead_ms` (compute, memory >= 1, overhead >= 0), fitted per GPU on Vidur's measured
per-operator times of six models (`data/inference/vidur-layers.csv`); an all-reduce is
`latency + size / bandwidth`, fitted on Vidur's measured all-reduces. So the fit follows each
model's size and TP, and a prediction is never faster than the hardware allows.
`kraft.infer.calibration` holds the fits and their held-out errors.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def activation_bytes(hidden: int, bytes_per_param: float) -> float:
    """A token's activations in and out of one layer's two blocks: 4 x width values."""
    return 4 * hidden * bytes_per_param


def all_reduce_bytes(model: LlmModel, tokens: float) -> float:
    """One all-reduce's message: the activations of `tokens` tokens."""
    return tokens * model.hidden * model.bytes_per_param


class ReplicaTiming:
    """The calibrated model, specialised to one replica shape, for the request simulator's
    hot loop: a prefill of several prompts, and a decode iteration of a batch.
    `engine_overhead_ms` is the serving engine's own time per iteration (scheduling,
    sampling), which kernel timings leave out."""

    def __init__(self, model: LlmModel, gpu: str, tp: int, engine_overhead_ms: float = 0.0):
        from kraft.infer.calibration import all_reduce_fit, layer_fit

        g = CATALOG[gpu]
        self.flops = g.bf16_flops * tp
        self.bandwidth = g.hbm_bandwidth_tbps * 1e12 * tp
        self.model, self.gpu, self.tp = model, gpu, tp
        fit = layer_fit(gpu)
        self.compute, self.memory = fit.compute, fit.memory
        layers = model.layers
        # Per iteration, independent of the batch: every layer's weights read once, each
        # layer's fixed overhead (kernel launches), the engine's own time.
        self.fixed_ms = (fit.memory * model.params * model.bytes_per_param / self.bandwidth * 1e3
                         + layers * fit.overhead_ms + engine_overhead_ms)
        self.ms_per_flop = fit.compute / self.flops * 1e3
        self.ms_per_byte = fit.memory / self.bandwidth * 1e3
        # Each token's activations, which every GPU of the replica reads whole.
        self.activation_ms_per_token = (layers * activation_bytes(model.hidden,
                                                                  model.bytes_per_param)
                                        * fit.memory / (g.hbm_bandwidth_tbps * 1e12) * 1e3)
        reduce = all_reduce_fit(gpu, tp)
        self.reduce_fixed_ms = 2 * layers * reduce.latency_ms if tp > 1 else 0.0
        self.reduce_ms_per_token = (2 * layers * all_reduce_bytes(model, 1) * reduce.ms_per_byte
                                    if tp > 1 else 0.0)

    def _tokens_ms(self, tokens: float) -> float:
        """The batch-dependent part of the layers and the all-reduces, for `tokens` tokens."""
        return (tokens * (2 * self.model.params * self.ms_per_flop
                          + self.activation_ms_per_token
                          + self.reduce_ms_per_token)
                + self.reduce_fixed_ms)

    def prefill_ms(self, tokens: float, tokens_squared: float) -> float:
        """Prefill of prompts with `tokens` in all and `tokens_squared` = sum of squares."""
        m = self.model
        attention = 2 * m.layers * m.hidden * tokens_squared * self.ms_per_flop
        return self.fixed_ms + self._tokens_ms(tokens) + attention

    def decode_ms(self, batch: int, context_tokens: float) -> float:
        """One decode iteration of `batch` sequences holding `context_tokens` in all."""
        kv = context_tokens * self.model.kv_bytes_per_token * self.ms_per_byte
        return self.fixed_ms + self._tokens_ms(batch) + kv


def predict(model: str | LlmModel, gpu: str, tp: int, batch: int, prompt: int,
            output_tokens: int = 128, engine_overhead_ms: float = 0.0) -> dict[str, float]:
    m = MODELS[model] if isinstance(model, str) else model
    roof_p, roof_d = roofline_ms(m, gpu, tp, batch, prompt, prompt + output_tokens / 2)
    timing = ReplicaTiming(m, gpu, tp, engine_overhead_ms)
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
