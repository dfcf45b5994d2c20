"""The Slurm executor: Kraft decides, Slurm executes.

Each rank of a gang is one batch job pinned where Kraft placed it: `sbatch --nodelist NODE
--gres gpu:K`, named `kraft-<job>-<attempt>-<rank>` so that a restarted control plane finds
its jobs again with `squeue` instead of submitting them twice. Slurm picks the device indices
on the node and sets CUDA_VISIBLE_DEVICES; Kraft only counts. Logs go to the job's log file
(`--output`, appended); exit statuses come from `kraft.exec.runner` around the command, so no
accounting database (slurmdbd) is needed. Cancel and preemption are `scancel`.

The control plane must share a file system with the Slurm nodes for logs and exit files (as
with NFS home directories on most clusters).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from functools import cache

from kraft.exec.base import ExitFiles, RunRequest, RunStatus, host_env, launcher_env

LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
        "RESIZING", "SIGNALING", "STAGE_OUT"}


class SlurmError(RuntimeError):
    pass


def _run(argv: list[str]) -> str:
    try:  # sbatch --export=ALL passes this environment on to the job: Kraft's private part out
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=host_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{argv[0]}: {e}") from e
    if out.returncode != 0:
        raise SlurmError(f"{shlex.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


class SlurmExecutor(ExitFiles):
    name = "slurm"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def __init__(self, work_dir, partition: str | None = None,
                 node_names: dict[str, str] | None = None):
        super().__init__(work_dir)
        self.partition = partition
        self.node_names = node_names or {}  # Kraft node name -> Slurm node name

    def _node(self, kraft_node: str) -> str:
        return self.node_names.get(kraft_node, kraft_node)

    def start(self, req: RunRequest) -> list[int]:
        ids = []
        log = self.log_path(req.job_id, req.attempt)
        master = _node_addr(self._node(req.ranks[0].node))
        try:
            for rank, r in enumerate(req.ranks):
                env = launcher_env(req, rank, master)
                argv = ["sbatch", "--parsable", f"--job-name=kraft-{req.job_id}-{req.attempt}-"
                        f"{rank}", f"--nodelist={self._node(r.node)}", "--nodes=1",
                        "--ntasks=1", f"--gres=gpu:{len(r.gpus)}", f"--output={log}",
                        "--open-mode=append", "--export=ALL," + ",".join(
                            f"{k}={v}" for k, v in env.items()),
                        *([f"--partition={self.partition}"] if self.partition else []),
                        "--wrap", shlex.join(self.runner_argv(req, rank, sys.executable))]
                ids.append(int(_run(argv).strip().split(";")[0]))
        except (SlurmError, ValueError):
            if ids:  # all or nothing: a gang never runs in part
                _run(["scancel", *map(str, ids)])
            raise
        return ids

    def _states(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        out = _run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(map(str, ids))])
        return {int(i): state for i, state in (line.split() for line in out.splitlines())}

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        try:
            states = self._states(handles)
        except SlurmError as e:
            if "Invalid job id" not in str(e):  # forgotten by Slurm: judge by exit files
                raise
            states = {}
        status, stop = self.gang_status(req, [states.get(i) in LIVE for i in handles])
        if stop:
            self.stop(req, handles)
        return status

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        if handles:
            _run(["scancel", *map(str, handles)])

    def find(self, req: RunRequest) -> list[int]:
        prefix = f"kraft-{req.job_id}-{req.attempt}-"
        out = _run(["squeue", "-h", "-o", "%i %j"])
        found = {}
        for line in out.splitlines():
            slurm_id, name = line.split(maxsplit=1)
            if name.startswith(prefix):
                found[int(name.removeprefix(prefix))] = int(slurm_id)
        return [found[r] for r in sorted(found)]


@cache
def _node_addr(node: str) -> str:
    """The rank-0 node's address for MASTER_ADDR (NodeAddr in slurm.conf)."""
    out = _run(["scontrol", "show", "node", "-o", node])
    for field in out.split():
        if field.startswith("NodeAddr="):
            return field.removeprefix("NodeAddr=")
    return node
