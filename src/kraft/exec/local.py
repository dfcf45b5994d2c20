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

from kraft.exec.base import ExitFiles, RunRequest, RunStatus, launcher_env


class LocalExecutor(ExitFiles):
    name = "local"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def start(self, req: RunRequest) -> list[int]:
        pids = []
        log = self.log_path(req.job_id, req.attempt)
        for rank, r in enumerate(req.ranks):
            env = {**os.environ, **launcher_env(req, rank, "127.0.0.1"),
                   "CUDA_VISIBLE_DEVICES": ",".join(map(str, r.gpus))}
            with open(log, "ab") as out:
                proc = subprocess.Popen(self.runner_argv(req, rank, sys.executable),
                                        stdout=out, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            pids.append(proc.pid)
        return pids

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        status, stop = self.gang_status(req, [_alive(p, req.job_id, req.attempt)
                                              for p in handles])
        if stop:
            self.stop(req, handles)
        return status

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        for pid in handles:
            if _alive(pid, req.job_id, req.attempt):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def find(self, req: RunRequest) -> list[int]:
        return [pid for pid in _runner_pids() if _alive(pid, req.job_id, req.attempt)]


def _runner_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _alive(pid: int, job_id: int, attempt: int) -> bool:
    """True if `pid` is this job attempt's runner (not a recycled pid), and not a zombie."""
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
    want = [b"kraft.exec.runner", b"--job-id", str(job_id).encode(), b"--attempt",
            str(attempt).encode()]
    return cmd[1:7] == [b"-m", *want] if len(cmd) > 6 else False
