"""Hardware failures in the twin: rates with sources, and the Young/Daly checkpoint interval.

A running job of g GPUs is interrupted at rate g x `per_gpu_hour` (a Poisson process: each GPU,
with its share of host, network and software, fails independently). An interrupted job loses
the work since its last checkpoint, pays its restart cost on the next start, and requeues --
the preemption path, counted apart as `failures`. The failed hardware is taken to be swapped
for a spare at once (as on large training clusters); node repair time is not modelled.

Source of the default rate: Meta, "The Llama 3 Herd of Models" (2024), section 3.3.4: 466
job interruptions in 54 days of pre-training on 16,384 H100 GPUs, 47 planned and 419
unexpected; 58.7 % of the unexpected ones GPU-related (faulty GPU 148 = 30.1 %, GPU HBM3
memory 72 = 17.2 %, ...). Kraft uses the unexpected ones: 419 / (16,384 x 54 x 24 GPU-h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LLAMA3_UNEXPECTED = 419
LLAMA3_GPUS = 16_384
LLAMA3_DAYS = 54
LLAMA3_PER_GPU_HOUR = LLAMA3_UNEXPECTED / (LLAMA3_GPUS * LLAMA3_DAYS * 24)  # 1.97e-5
LLAMA3_GPU_RELATED_SHARE = 0.587


@dataclass
class FailureModel:
    per_gpu_hour: float = LLAMA3_PER_GPU_HOUR
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.per_gpu_hour >= 0:
            raise ValueError(f"failure rate must be >= 0 per GPU-hour, got {self.per_gpu_hour}")
        self.rng = np.random.default_rng(self.seed)

    def next_failure_s(self, gpus: int) -> float:
        """Seconds from now to the job's next interruption (inf if the rate is 0)."""
        rate_per_s = gpus * self.per_gpu_hour / 3600
        return float(self.rng.exponential(1 / rate_per_s)) if rate_per_s > 0 else math.inf

    def mtbf_s(self, gpus: int) -> float:
        return 3600 / (gpus * self.per_gpu_hour) if self.per_gpu_hour > 0 else math.inf


def young_daly_interval_s(checkpoint_cost_s: float, mtbf_s: float) -> float:
    """Checkpoint interval that minimises expected lost time: sqrt(2 x cost x MTBF) (Young,
    1974, first order; Daly, 2006, shows it holds while the cost is small next to the MTBF)."""
    return math.sqrt(2 * checkpoint_cost_s * mtbf_s)


def parse_rate(text: str) -> float:
    """`llama3` or a number of failures per GPU-hour."""
    if text == "llama3":
        return LLAMA3_PER_GPU_HOUR
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"--failures {text!r}: 'llama3' or a rate per GPU-hour, e.g. "
                         "2e-5") from None
    if rate < 0:
        raise ValueError(f"--failures {text!r}: a rate cannot be negative")
    return rate


CHECKPOINT_COST_S = 60.0  # ASSUMED write time of one checkpoint, for the suggestion only


def failure_figures(jobs, model: FailureModel) -> dict:
    """Interruptions, goodput and effective training time of a run with failures.

    Effective training time (Meta's measure): a job's useful run time over the wall time from
    its first start to its end, averaged weighted by GPUs; goodput: useful GPU-hours over
    GPU-hours held (lost work and restarts are the difference)."""
    done = [j for j in jobs if j.finish_s >= 0 and j.first_start_s >= 0]
    useful = np.array([j.gpus * j.duration_s * (j.pool.slowdown if j.pool else 1.0)
                       for j in done])
    wall = np.array([j.gpus * (j.finish_s - j.first_start_s) for j in done])
    held = useful + np.array([j.lost_gpu_s for j in done])
    biggest = max(done, key=lambda j: j.gpus, default=None)
    out = {
        "per_gpu_hour": model.per_gpu_hour, "seed": model.seed,
        "interruptions": int(sum(j.failures for j in jobs)),
        "goodput": round(float(useful.sum() / held.sum()), 4) if done else None,
        "effective_training_time": round(float(useful.sum() / wall.sum()), 4) if done else None,
    }
    if biggest is not None and model.per_gpu_hour > 0:
        mtbf = model.mtbf_s(biggest.gpus)
        out["largest_job"] = {
            "gpus": biggest.gpus, "interruptions": biggest.failures,
            "mtbf_h": round(mtbf / 3600, 3),
            "young_daly_checkpoint_interval_s": round(young_daly_interval_s(
                CHECKPOINT_COST_S, mtbf)),
            "assumed_checkpoint_cost_s": CHECKPOINT_COST_S}
    return out
