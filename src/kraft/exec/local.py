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

from kraft.exec.base import RunRequest, RunStatus


class LocalExecutor:
    name = "local"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        (work_dir / "logs").mkdir(parents=True, exist_ok=True)
        (work_dir / "exit").mkdir(parents=True, exist_ok=True)

    def log_path(self, job_id: int, attempt: int) -> Path:
        return self.work_dir / "logs" / f"{job_id}.{attempt}.log"

    def _exit_file(self, job_id: int, attempt: int, rank: int) -> Path:
        return self.work_dir / "exit" / f"{job_id}.{attempt}.{rank}"

    def start(self, req: RunRequest) -> list[int]:
        pids = []
        log = self.log_path(req.job_id, req.attempt)
        port = 20000 + (req.job_id * 7 + req.attempt) % 20000
        for rank, r in enumerate(req.ranks):
            env = {**os.environ, **req.env,
                   "CUDA_VISIBLE_DEVICES": ",".join(map(str, r.gpus)),
                   "KRAFT_JOB_ID": str(req.job_id), "KRAFT_NODE": r.node,
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "WORLD_SIZE": str(len(req.ranks)), "RANK": str(rank)}
            argv = [sys.executable, "-m", "kraft.exec.runner", "--job-id", str(req.job_id),
                    "--attempt", str(req.attempt), "--exit-file",
                    str(self._exit_file(req.job_id, req.attempt, rank)), "--", *req.command]
            with open(log, "ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            pids.append(proc.pid)
        return pids

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        codes = []
        for rank in range(len(req.ranks)):
            f = self._exit_file(req.job_id, req.attempt, rank)
            codes.append(int(f.read_text()) if f.exists() else None)
        alive = [_alive(pid, req.job_id, req.attempt) for pid in handles]
        if any(alive):
            if any(c not in (None, 0) for c in codes):  # one rank failed: the gang fails
                self.stop(req, handles)
                return RunStatus(False, next(c for c in codes if c not in (None, 0)))
            return RunStatus(True)
        if all(c is not None for c in codes):
            return RunStatus(False, max(codes, key=abs))
        return RunStatus(False, None, lost=True)

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        for pid in handles:
            if _alive(pid, req.job_id, req.attempt):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def find(self, job_id: int, attempt: int) -> list[int]:
        return [pid for pid in _runner_pids() if _alive(pid, job_id, attempt)]


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
