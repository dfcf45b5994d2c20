"""Executor latency, recorded in bench/results/engines-<executor>.json.

    python bench/engines.py local
    SLURM_CONF=… python bench/engines.py slurm      (a cluster from scripts/engines/slurm-up.sh)
    RAY_AUTH_MODE=disabled python bench/engines.py ray   (a cluster from scripts/engines/ray-up.sh)

- start to running: from `start()` of a 4-GPU rank until its command has really begun (the
  command touches a file first thing);
- cancel to free: from `stop()` until the engine no longer holds the GPUs (local: the process
  is gone; Slurm: the job has left squeue; Ray: the Ray job is no longer pending or running, its
  placement group removed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from kraft.exec.base import Rank, RunRequest  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("executor", choices=["local", "slurm", "ray"])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--ray", default="http://127.0.0.1:8265", help="Ray dashboard URL")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kraft-engines-"))
    if a.executor == "ray":
        from kraft.exec.ray import RayExecutor

        executor, node = RayExecutor(work / "runs", a.ray), "node1"
    elif a.executor == "slurm":
        from kraft.exec.slurm import SlurmExecutor

        executor, node = SlurmExecutor(work / "runs", None, {}), "node1"
    else:
        from kraft.exec.local import LocalExecutor

        executor, node = LocalExecutor(work / "runs"), "n0"
    starts, frees = [], []
    for i in range(1, a.runs + 1):
        mark = work / f"started-{i}"
        req = RunRequest(i, 1, ("bash", "-c", f"touch {mark}; sleep 60"),
                         (Rank(node, (0, 1, 2, 3)),))
        t0 = time.perf_counter()
        handles = executor.start(req)
        while not mark.exists():
            time.sleep(0.002)
        starts.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        executor.stop(req, handles)
        while executor.status(req, handles).alive:  # some process of the attempt lives
            time.sleep(0.002)
        frees.append(time.perf_counter() - t1)

    def ms(xs):
        xs = sorted(xs)
        return round(statistics.median(xs) * 1e3), round(xs[int(len(xs) * 0.99)] * 1e3)

    (s50, s99), (f50, f99) = ms(starts), ms(frees)
    print(f"{a.executor}: start to running p50 {s50} ms, p99 {s99} ms; cancel to free p50 "
          f"{f50} ms, p99 {f99} ms ({a.runs} runs of a 4-GPU rank)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"engines-{a.executor}.json").write_text(json.dumps({
        "executor": a.executor, "runs": a.runs,
        "start_to_running_p50_ms": s50, "start_to_running_p99_ms": s99,
        "cancel_to_free_p50_ms": f50, "cancel_to_free_p99_ms": f99,
        "recorded": time.strftime("%Y-%m-%d")}, indent=2) + "\n")


if __name__ == "__main__":
    main()
