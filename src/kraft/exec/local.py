"""The local executor: each rank of a job is a process on this machine with
CUDA_VISIBLE_DEVICES set to its logical GPUs and the variables a distributed launcher expects
(MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK). Logs go to files; exit statuses to files too, so
that a restarted control plane finds out how jobs ended while it was down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from kraft.exec.base import ExitFiles, RunRequest, RunStatus, host_env, launcher_env


class LocalExecutor(ExitFiles):
    name = "local"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def start(self, req: RunRequest) -> list[int]:
        pids = []
        log = self.log_path(req.job_id, req.attempt)
        for rank, r in enumerate(req.ranks):
            env = {**host_env(), **launcher_env(req, rank, "127.0.0.1"),
                   "CUDA_VISIBLE_DEVICES": ",".join(map(str, r.gpus))}
            with open(log, "ab") as out:
                proc = subprocess.Popen(self.runner_argv(req, rank, sys.executable),
                                        stdout=out, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            pids.append(proc.pid)
        return pids

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        status, stop = self.gang_status(req, [self._alive(p, req)
                                              for p in handles])
        if stop:
            self.stop(req, handles)
        return status

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        for pid in handles:
            if self._alive(pid, req):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def find(self, req: RunRequest) -> list[int]:
        return [pid for pid in _runner_pids() if self._alive(pid, req)]

    def _alive(self, pid: int, req: RunRequest) -> bool:
        # the runner's argv up to its exit file: job id, attempt and this work folder, so
        # another Kraft on the same machine with the same job id is never taken for ours
        want = self.runner_argv(req, 0, "")[1:9]
        want[-1] = str(self.exit_file(req.job_id, req.attempt, 0))[:-1]  # any rank
        return _alive(pid, [w.encode() for w in want])


def _runner_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _alive(pid: int, want: list[bytes]) -> bool:
    """True if `pid` runs `python` + `want` (not a recycled pid), and is not a zombie; the last
    item of `want` is a prefix (the exit file without its rank)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own child
        except ChildProcessError:
            pass
        return False
    args = cmd[1:1 + len(want)]
    return len(args) == len(want) and args[:-1] == want[:-1] and args[-1].startswith(want[-1])
