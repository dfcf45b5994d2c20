"""The executor interface: small, with optional capabilities declared, not assumed."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kraft.exec.identity import Identity


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
    identity: Identity | None = None  # None: run as the service's own account (tests, bench)
    grace_s: float = 10.0  # SIGTERM, then this long, then SIGKILL
    master_port: int | None = None  # the rendezvous port, drawn at start


@dataclass(frozen=True, slots=True)
class RunStatus:
    running: bool
    exit_code: int | None = None  # set once finished
    lost: bool = False  # gone without an exit status (killed with the host, say)
    alive: bool = False  # some process of the attempt still exists (it is being stopped)


def launcher_env(req: RunRequest, rank: int, master_addr: str) -> dict[str, str]:
    """What a distributed launcher (torchrun, DeepSpeed) expects, the same on every engine."""
    port = req.master_port or 20000 + (req.job_id * 7 + req.attempt) % 20000
    return {**req.env, "KRAFT_JOB_ID": str(req.job_id), "KRAFT_ATTEMPT": str(req.attempt),
            "KRAFT_NODE": req.ranks[rank].node,
            "MASTER_ADDR": master_addr, "MASTER_PORT": str(port),
            "WORLD_SIZE": str(len(req.ranks)), "RANK": str(rank)}


def log_file(work_dir: Path, job_id: int, attempt: int) -> Path:
    """Where every executor leaves an attempt's log (the API reads it from here)."""
    return work_dir / "logs" / f"{job_id}.{attempt}.log"


def read_log(runs_dir: Path, job_id: int, attempt: int, offset: int, size: int) -> bytes:
    """Up to `size` bytes of an attempt's log from `offset`, wherever its executor left it
    (runs/logs, or a Slurm job's own folder, which its tenant owns: a symbolic link or a hard
    link planted there is refused, so the service never reads another file for a tenant)."""
    for path in (log_file(runs_dir, job_id, attempt),
                 runs_dir / "slurm" / str(job_id) / f"{attempt}.log"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            continue
        except OSError:  # a link in the tenant's folder (ELOOP), or not ours to read
            return b""
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return b""
            f.seek(min(offset, st.st_size))
            return f.read(size)
    return b""


def private_dir(path: Path) -> Path:
    """A directory only the service's account may enter, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


class ExitFiles:
    """Logs and exit statuses in files under `work_dir`, written by `kraft.exec.runner` around
    each rank's command, so that a restarted control plane learns how a rank it did not see
    end ended. Shared by engines that run on this file system (local, Slurm)."""

    def __init__(self, work_dir: Path):
        self.work_dir = private_dir(work_dir)
        private_dir(work_dir / "logs")
        private_dir(work_dir / "exit")

    def log_path(self, job_id: int, attempt: int) -> Path:
        return log_file(self.work_dir, job_id, attempt)

    def open_log(self, job_id: int, attempt: int) -> int:
        """The attempt's log for appending, 0600: a job gets this descriptor, never the path."""
        return os.open(self.log_path(job_id, attempt), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                       0o600)

    def exit_file(self, job_id: int, attempt: int, rank: int) -> Path:
        return self.work_dir / "exit" / f"{job_id}.{attempt}.{rank}"

    def started(self, req: RunRequest, rank: int) -> bool:
        """Whether this rank's runner ever began (kraft.exec.runner writes the mark first)."""
        f = self.exit_file(req.job_id, req.attempt, rank)
        return f.exists() or Path(f"{f}.started").exists()

    def runner_argv(self, req: RunRequest, rank: int, python: str,
                    extra: tuple[str, ...] = (),
                    entry: tuple[str, ...] = ("-m", "kraft.exec.runner")) -> list[str]:
        return [python, *entry, "--job-id", str(req.job_id), "--attempt",
                str(req.attempt), "--exit-file",
                str(self.exit_file(req.job_id, req.attempt, rank)), "--grace-s",
                f"{req.grace_s:g}", *extra, "--", *req.command]

    def gang_status(self, req: RunRequest, alive: list[bool]) -> tuple[RunStatus, bool]:
        """The gang's status from its ranks' liveness and exit files; the flag says the live
        ranks must be stopped. All or nothing in life as at start: one rank that failed or
        vanished without an exit status ends the attempt."""
        codes = []
        for rank in range(len(req.ranks)):
            f = self.exit_file(req.job_id, req.attempt, rank)
            codes.append(int(f.read_text()) if f.exists() else None)
        failed = [c for c in codes if c not in (None, 0)]
        vanished = [r for r, (a, c) in enumerate(zip(alive, codes)) if not a and c is None]
        if any(alive):
            if failed:
                return RunStatus(False, failed[0], alive=True), True
            if vanished:
                return RunStatus(False, None, lost=True, alive=True), True
            return RunStatus(True, alive=True), False
        if all(c is not None for c in codes):
            return RunStatus(False, max(codes, key=abs)), False
        return RunStatus(False, None, lost=True), False


def statuses(executor, runs: list[tuple[RunRequest, list]]) -> list[RunStatus]:
    """Every run's status, in one engine query where the engine offers one."""
    many = getattr(executor, "status_many", None)
    if many is not None:
        return many(runs)
    return [executor.status(req, handles) for req, handles in runs]


class Executor(Protocol):
    name: str
    # e.g. {"logs", "adopt", "multi-node"}; "stops-at-once": nothing lives once stop returns
    capabilities: frozenset[str]

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        """Launch (the ranks in `only`, to finish a start a crash cut short); returns handles,
        one per rank launched (pids for the local executor, job ids for Slurm). All or nothing:
        on failure nothing it started is left running, and it raises."""

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        """Judged on every rank: one that failed or vanished ends the gang (and the executor
        stops the rest; `alive` says whether any of it still lives)."""

    # Optional: nodes_down() -> {Kraft node name: why}, the nodes the engine reports lost
    # (Slurm down/failed, a dead Ray node); the loop marks them down (kraft.control.nodes).
    # Optional: status_many(runs: list[(RunRequest, handles)]) -> list[RunStatus], the status
    # of every run from one engine query (one squeue listing, one Ray job listing) instead of
    # one per run. The loop calls it through `statuses` below.

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        """SIGTERM to every process of the attempt, SIGKILL `req.grace_s` later."""

    def kill(self, req: RunRequest, handles: list[int]) -> None:
        """SIGKILL now: for an attempt still alive well past its grace period."""

    def log_path(self, job_id: int, attempt: int) -> Path: ...

    def started(self, req: RunRequest, rank: int) -> bool:
        """Whether this rank was ever launched (False: safe to launch it after a crash)."""

    def find(self, req: RunRequest) -> list[int | None]:
        """This attempt's live handles by rank, None where a rank is not alive (re-adoption
        after a restart)."""

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        """Attempts alive on the engine that are not `current` (job id -> the attempt the
        database says runs): a crash came between recording an end and stopping it."""
