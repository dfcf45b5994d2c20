"""Inference simulator speed, recorded in bench/results/infer.json.

    python bench/infer.py [--shared-data ../shared/data]

The full Azure LLM 2023 conversation trace (19,366 requests, one hour) on 16 replicas of
Llama-2-70B on 8 x H100 at the nordic-federation fleet, once per router and once with the
autoscaler. Target: under 10 s each. Named baseline: real time -- the trace spans 3,502 s, so
`x_real_time` says how many times faster than the hour it simulates. Figures are wall-clock
on this machine; compare ratios across machines. Each run is its own process (peak memory).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

RESULTS = Path(__file__).parent / "results"
TARGET_S = 10.0


def one(data_dir: str, router: str, autoscale: bool) -> dict:
    from kraft.infer.requests import load_requests
    from kraft.infer.sim import simulate
    from kraft.spec.inference import InferenceServiceSpec
    from kraft.spec.load import load_fleet

    svc = InferenceServiceSpec(name="chat", model="llama-2-70b", gpu="H100-SXM", tp=8,
                               region="eu-north", slo={"ttft_ms": 1000, "tpot_ms": 50},
                               replicas={"min": 1, "max": 32})
    reqs = load_requests("azure-conv", Path(data_dir))
    f = simulate(svc, load_fleet("nordic-federation"), reqs, router, 16, autoscale).figures
    span_s = float(reqs.arrival_s[-1])
    return {"router": router, "autoscale": autoscale, "requests": len(reqs),
            "wall_s": f["sim_wall_s"], "requests_per_s": round(len(reqs) / f["sim_wall_s"]),
            "x_real_time": round(span_s / f["sim_wall_s"]),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "slo_attainment": f["slo_attainment"], "ttft_p99_ms": f["ttft_ms"]["p99"],
            "tpot_p99_ms": f["tpot_ms"]["p99"], "gpu_hours": f["gpu_hours"],
            "target_s": TARGET_S, "meets_target": f["sim_wall_s"] < TARGET_S}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] /
                                              "shared" / "data"))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.data_dir, a.one[0], a.one[1] == "autoscale")))
        return
    if not (Path(a.data_dir) / "inference/azure-llm-2023").is_dir():
        sys.exit(f"bench/infer.py needs the Azure LLM traces under {a.data_dir}/inference "
                 "(--shared-data)")
    runs = []
    for router, mode in [("round-robin", "fixed"), ("least-outstanding", "fixed"),
                         ("slo-aware", "fixed"), ("slo-aware", "autoscale")]:
        out = subprocess.run([sys.executable, __file__, "--shared-data", a.data_dir, "--one",
                              router, mode], check=True, capture_output=True, text=True)
        run = json.loads(out.stdout)
        runs.append(run)
        print(f"{router:18} {mode:9} {run['wall_s']:6.2f} s  {run['requests_per_s']:>7,} "
              f"req/s  {run['x_real_time']:>5,}x real time  {run['peak_rss_mb']} MB  "
              f"attainment {run['slo_attainment']:.3f}")
    payload = {"trace": "azure-conv (19,366 requests, 3,502 s)",
               "service": "llama-2-70b on 8 x H100-SXM, 16 replicas, nordic-federation",
               "runs": runs,
               "machine": f"{platform.machine()}, {platform.python_implementation()} "
                          f"{platform.python_version()}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "infer.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
