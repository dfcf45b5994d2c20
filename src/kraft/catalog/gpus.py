"""GPU catalog: rated power, idle power, dense FLOP/s, HBM size and bandwidth.

Rated power, FLOP/s and memory figures come from the vendor data sheets named beside each
entry. FLOP/s are *dense* (no structured sparsity). GPUs without BF16 tensor cores (P100,
V100, T4) list their dense FP16 peak in `bf16_flops` -- the 16-bit figure a training job would
use on them -- and the comment says so. `fp8_flops` is 0 where the GPU has no FP8.

Idle power is not on data sheets. The figures below are typical `nvidia-smi` power readings of
an idle GPU in P0 with the driver loaded (about 10-15 % of rated power on SXM parts); they are
marked ASSUMED and the energy model treats them as parameters a site may override.

`interconnect_gbps` is the same data sheets' GPU-to-GPU figure: NVLink 1-5 (P100 160 GB/s,
V100 300, A100 600, H100/H200 900, B200/GB200 1,800), or PCIe x16 (T4 Gen3 32, A10 Gen4 64).
"""

from __future__ import annotations

from dataclasses import dataclass

TERA = 1e12


@dataclass(frozen=True, slots=True)
class GpuModel:
    name: str
    rated_power_w: float
    idle_power_w: float
    bf16_flops: float  # dense 16-bit tensor FLOP/s
    fp8_flops: float  # dense FP8 FLOP/s, 0 if unsupported
    hbm_gb: float
    hbm_bandwidth_tbps: float
    # GPU-to-GPU bandwidth inside a node, GB/s, both directions together as data sheets give
    # it (NVLink; PCIe where the GPU has none). Tensor-parallel all-reduces move over it.
    interconnect_gbps: float
    source: str


_MODELS = [
    # NVIDIA Tesla P100 SXM2 data sheet (2016): 300 W, FP16 21.2 TFLOP/s (no tensor cores),
    # 16 GB HBM2 at 732 GB/s.
    GpuModel("P100", 300, 30, 21.2 * TERA, 0, 16, 0.732, 160,
             "NVIDIA Tesla P100 data sheet (SXM2); idle ASSUMED"),
    # NVIDIA Tesla V100 SXM2 data sheet: 300 W, 125 TFLOP/s FP16 tensor, 900 GB/s, 16/32 GB.
    GpuModel("V100", 300, 40, 125 * TERA, 0, 32, 0.9, 300,
             "NVIDIA Tesla V100 data sheet (SXM2 32 GB); idle ASSUMED"),
    GpuModel("V100M16", 300, 40, 125 * TERA, 0, 16, 0.9, 300,
             "NVIDIA Tesla V100 data sheet (SXM2 16 GB); idle ASSUMED"),
    GpuModel("V100M32", 300, 40, 125 * TERA, 0, 32, 0.9, 300,
             "NVIDIA Tesla V100 data sheet (SXM2 32 GB); idle ASSUMED"),
    # NVIDIA T4 data sheet: 70 W, 65 TFLOP/s FP16 tensor (mixed precision), 16 GB at 320 GB/s.
    GpuModel("T4", 70, 10, 65 * TERA, 0, 16, 0.32, 32,
             "NVIDIA T4 data sheet; idle ASSUMED"),
    # NVIDIA A10 data sheet: 150 W, BF16 tensor 125 TFLOP/s dense (250 with sparsity),
    # 24 GB GDDR6 at 600 GB/s.
    GpuModel("A10", 150, 20, 125 * TERA, 0, 24, 0.6, 64,
             "NVIDIA A10 data sheet; idle ASSUMED"),
    # NVIDIA A100 data sheet (SXM 80 GB): 400 W, BF16 312 TFLOP/s dense, 2,039 GB/s.
    GpuModel("A100", 400, 50, 312 * TERA, 0, 80, 2.039, 600,
             "NVIDIA A100 data sheet (SXM4 80 GB); idle ASSUMED"),
    # NVIDIA H100 data sheet (SXM5): 700 W, BF16 989 TFLOP/s dense, FP8 1,979, 80 GB, 3.35 TB/s.
    GpuModel("H100-SXM", 700, 70, 989 * TERA, 1979 * TERA, 80, 3.35, 900,
             "NVIDIA H100 data sheet (SXM5); idle ASSUMED"),
    # NVIDIA H200 data sheet (SXM): 700 W, same compute as H100, 141 GB HBM3e at 4.8 TB/s.
    GpuModel("H200", 700, 70, 989 * TERA, 1979 * TERA, 141, 4.8, 900,
             "NVIDIA H200 data sheet (SXM); idle ASSUMED"),
    # NVIDIA HGX B200 data sheet: 1,000 W per GPU, 2.25 PFLOP/s dense BF16, 4.5 dense FP8,
    # 180 GB HBM3e at 7.7 TB/s (per GPU; the data sheet lists 8-GPU totals).
    GpuModel("B200", 1000, 100, 2250 * TERA, 4500 * TERA, 180, 7.7, 1800,
             "NVIDIA HGX B200 data sheet (per GPU); idle ASSUMED"),
    # NVIDIA GB200 NVL72 data sheet: 72 GPUs with 360 PFLOP/s BF16 and 720 PFLOP/s FP8 *with
    # sparsity* -> 2.5 / 5 PFLOP/s dense per GPU; 13.4 TB HBM3e -> ~186 GB and 8 TB/s per GPU.
    # Power: 1,200 W per Blackwell GPU is the top of the GB200 configurable TDP range.
    GpuModel("GB200", 1200, 120, 2500 * TERA, 5000 * TERA, 186, 8.0, 1800,
             "NVIDIA GB200 NVL72 data sheet (per GPU, dense = sparse/2); idle ASSUMED"),
    # Alibaba's openb trace anonymises two models as G2 and G3. Nothing public says what they
    # are; their figures are ASSUMED equal to the V100 (32 GB) so that the fleet can be
    # simulated. Treat energy results on these nodes as illustrative only.
    GpuModel("G2", 300, 40, 125 * TERA, 0, 32, 0.9, 300,
             "anonymised in the Alibaba openb trace; ALL figures ASSUMED = V100"),
    GpuModel("G3", 300, 40, 125 * TERA, 0, 32, 0.9, 300,
             "anonymised in the Alibaba openb trace; ALL figures ASSUMED = V100"),
]

CATALOG: dict[str, GpuModel] = {m.name: m for m in _MODELS}


def gpu_model(name: str) -> GpuModel:
    """Look a model up by name; the error lists the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown GPU model {name!r}; known: {', '.join(CATALOG)}") from None
