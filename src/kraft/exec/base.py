"""The executor interface: small, with optional capabilities declared, not assumed."""

from __future__ import annotations

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


class Executor(Protocol):
    name: str
    capabilities: frozenset[str]  # e.g. {"logs", "adopt", "multi-node"}

    def start(self, req: RunRequest) -> list[int]:
        """Launch; returns handles (pids for the local executor), one per rank."""

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus: ...

    def stop(self, req: RunRequest, handles: list[int]) -> None: ...

    def log_path(self, job_id: int, attempt: int) -> Path: ...

    def find(self, job_id: int, attempt: int) -> list[int]:
        """Handles of this attempt still alive (re-adoption after a restart)."""
