"""Power and PUE models, each a small pure function of documented parameters."""

from __future__ import annotations

import numpy as np

from kraft.catalog.gpus import GpuModel
from kraft.spec.models import CoolingSpec

# A typical training job's model FLOP utilisation: Meta reports 38-43 % BF16 MFU for
# Llama 3 405B on 16,384 H100 ("The Llama 3 Herd of Models", 2024, table 4).
DEFAULT_MFU = 0.4
# EU AI Act, Art. 51(2): a general-purpose model trained with more than 10^25 FLOP is presumed
# to have systemic risk, with extra obligations for its provider.
AI_ACT_SYSTEMIC_FLOP = 1e25


def gpu_power_w(gpu: GpuModel, utilization: float) -> float:
    """Linear between idle and rated power (the usual first-order GPU power model)."""
    return gpu.idle_power_w + utilization * (gpu.rated_power_w - gpu.idle_power_w)


def capped_power_w(gpu: GpuModel, cap_w: float | None) -> float:
    """A busy GPU's draw under an optional power cap."""
    return gpu.rated_power_w if cap_w is None else min(cap_w, gpu.rated_power_w)


def cap_slowdown(gpu: GpuModel, cap_w: float | None) -> float:
    """How much longer work takes under a power cap. First-order DVFS model: dynamic power
    grows with f x V^2, roughly f^3, so clock speed -- and a compute-bound job's speed --
    scales with the cube root of the dynamic power allowed. Memory-bound work slows less:
    treat this as an upper estimate."""
    busy = capped_power_w(gpu, cap_w)
    if busy >= gpu.rated_power_w:
        return 1.0
    return ((gpu.rated_power_w - gpu.idle_power_w) / (busy - gpu.idle_power_w)) ** (1 / 3)


def pue(cooling: CoolingSpec, outdoor_c: np.ndarray) -> np.ndarray:
    """Flat at `pue_free` up to the free-cooling limit, then linear to `pue_hot` at `hot_c`,
    flat beyond."""
    span = cooling.hot_c - cooling.free_cooling_max_c
    frac = np.clip((outdoor_c - cooling.free_cooling_max_c) / span, 0.0, 1.0)
    return cooling.pue_free + frac * (cooling.pue_hot - cooling.pue_free)
