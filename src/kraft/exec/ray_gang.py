"""The driver of one Kraft job on Ray, run as a Ray job's entrypoint:

    python -m kraft.exec.ray_gang --bundles node1:4,node2:2 -- cmd args...

It reserves the gang at once as a placement group, one bundle per rank, each pinned to the node
Kraft chose through that node's custom resource (`ray-up.sh` gives every node one named after
it), STRICT_PACK for one rank and STRICT_SPREAD for several. It first checks that every bundle
can ever fit, and fails at once with the reason if not: a Ray job pending on resources that can
never exist cannot be stopped. Then one task per rank runs the command with the launcher's
variables; Ray sets CUDA_VISIBLE_DEVICES. The driver exits with the first non-zero rank exit
code (0 if all succeed). Stopping the Ray job sends this driver SIGTERM: it then force-cancels
its rank tasks and removes its placement group before exiting, so the GPUs are free when the
job has stopped rather than whenever Ray's own clean-up of a dead driver comes round.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

INFEASIBLE = 3


@ray.remote(num_cpus=0)
def run_rank(argv: list[str], env: dict[str, str], cwd: str | None = None) -> int:
    # the worker's stdout is a file Ray streams back to the driver, hence to the job's log;
    # of the worker's own environment (Ray's settings) only the allow-list and Ray's GPUs
    from kraft.exec.identity import INHERITED

    keep = {k: os.environ[k] for k in (*INHERITED, "CUDA_VISIBLE_DEVICES") if k in os.environ}
    return subprocess.run(argv, env={**keep, **env}, cwd=cwd,
                          stderr=subprocess.STDOUT).returncode


def feasible(bundles: list[tuple[str, int]]) -> str | None:
    totals = {}
    for node in ray.nodes():
        if node["Alive"]:
            res = node["Resources"]
            for name in res:
                totals[name] = res.get("GPU", 0)
    for node, gpus in bundles:
        if node not in totals:
            return f"no live Ray node carries the resource {node!r}"
        if totals[node] < gpus:
            return f"Ray node {node!r} has {totals[node]:g} GPUs; the rank needs {gpus}"
    return None


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts = dict(zip(argv[:split:2], argv[1:split:2]))
    cmd = argv[split + 1:]
    bundles = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1]))
               for b in opts["--bundles"].split(",")]
    envs = json.loads(opts["--env"])
    ray.init(log_to_driver=True)
    reason = feasible(bundles)
    if reason:
        print(f"kraft: infeasible on this Ray cluster: {reason}", flush=True)
        return INFEASIBLE
    refs: list = []
    pgs: list = []

    def stop(signum, _frame):  # installed after ray.init, which sets a handler of its own
        for ref in refs:
            ray.cancel(ref, force=True)
        for pg in pgs:
            remove_placement_group(pg)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)  # before the group exists: a stop never leaks it
    pg = placement_group([{"GPU": g, node: 0.001} for node, g in bundles],
                         strategy="STRICT_PACK" if len(bundles) == 1 else "STRICT_SPREAD")
    pgs.append(pg)
    ray.get(pg.ready())
    refs += [run_rank.options(
        num_gpus=g, scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=i)).remote(cmd, envs[i], opts.get("--cwd"))
        for i, (_, g) in enumerate(bundles)]
    codes = ray.get(refs)
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
