"""The executor interface: small, with optional capabilities declared, not assumed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Rank:
    node: str
    gpus: tuple[int, ...]  # logical GPU indices on that node


@dataclass(frozen=True)
class RunRequest:
    job_id: int
    attempt: int
    command: tuple[str, ...]
    ranks: tuple[Rank, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunStatus:
    running: bool
    exit_code: int | None = None  # set once finished
    lost: bool = False  # gone without an exit status (killed with the host, say)


# Settings of Kraft's own processes that a job must not inherit: with it, a job using
# prometheus_client would write into Kraft's metrics folder and show up in /metrics.
PRIVATE_ENV = ("PROMETHEUS_MULTIPROC_DIR",)


def host_env() -> dict[str, str]:
    """This process's environment, less Kraft's private settings: what jobs start from."""
    return {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}


def launcher_env(req: RunRequest, rank: int, master_addr: str) -> dict[str, str]:
    """What a distributed launcher (torchrun, DeepSpeed) expects, the same on every engine."""
    port = 20000 + (req.job_id * 7 + req.attempt) % 20000
    return {**req.env, "KRAFT_JOB_ID": str(req.job_id), "KRAFT_NODE": req.ranks[rank].node,
            "MASTER_ADDR": master_addr, "MASTER_PORT": str(port),
            "WORLD_SIZE": str(len(req.ranks)), "RANK": str(rank)}


def log_file(work_dir: Path, job_id: int, attempt: int) -> Path:
    """Where every executor leaves an attempt's log (the API reads it from here)."""
    return work_dir / "logs" / f"{job_id}.{attempt}.log"


class ExitFiles:
    """Logs and exit statuses in files under `work_dir`, written by `kraft.exec.runner` around
    each rank's command, so that a restarted control plane learns how a rank it did not see
    end ended. Shared by engines that run on this file system (local, Slurm)."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        (work_dir / "logs").mkdir(parents=True, exist_ok=True)
        (work_dir / "exit").mkdir(parents=True, exist_ok=True)

    def log_path(self, job_id: int, attempt: int) -> Path:
        return log_file(self.work_dir, job_id, attempt)

    def exit_file(self, job_id: int, attempt: int, rank: int) -> Path:
        return self.work_dir / "exit" / f"{job_id}.{attempt}.{rank}"

    def runner_argv(self, req: RunRequest, rank: int, python: str) -> list[str]:
        return [python, "-m", "kraft.exec.runner", "--job-id", str(req.job_id), "--attempt",
                str(req.attempt), "--exit-file",
                str(self.exit_file(req.job_id, req.attempt, rank)), "--", *req.command]

    def gang_status(self, req: RunRequest, alive: list[bool]) -> tuple[RunStatus, bool]:
        """The gang's status from its ranks' liveness and exit files; the flag says the live
        ranks must be stopped (one rank failed, so the whole gang fails)."""
        codes = []
        for rank in range(len(req.ranks)):
            f = self.exit_file(req.job_id, req.attempt, rank)
            codes.append(int(f.read_text()) if f.exists() else None)
        failed = [c for c in codes if c not in (None, 0)]
        if any(alive):
            return (RunStatus(False, failed[0]), True) if failed else (RunStatus(True), False)
        if all(c is not None for c in codes):
            return RunStatus(False, max(codes, key=abs)), False
        return RunStatus(False, None, lost=True), False


class Executor(Protocol):
    name: str
    capabilities: frozenset[str]  # e.g. {"logs", "adopt", "multi-node"}

    def start(self, req: RunRequest) -> list[int]:
        """Launch; returns handles, one per rank (pids for the local executor, job ids for
        Slurm). All or nothing: on failure nothing is left running, and it raises."""

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus: ...

    def stop(self, req: RunRequest, handles: list[int]) -> None: ...

    def log_path(self, job_id: int, attempt: int) -> Path: ...

    def find(self, req: RunRequest) -> list[int]:
        """Handles of this attempt still alive, by rank (re-adoption after a restart)."""
