"""An executor that runs nothing: each attempt "runs" for a given time on the control plane's
clock, then reports exit 0. It is how the live service is replayed against the twin (the
same jobs through both bodies, tests/test_one_brain.py) and load-tested at fleet scale
(bench/control.py) without a process per job.

How long an attempt runs is `run_s(req)`: by default the N of a `sleep N` command, so a job
spec's `command: [sleep, "3600"]` runs an hour on it; any other command ends at once. Each
rank's handle is the attempt's end in epoch milliseconds, so a restarted service re-adopts
what is still "running" from its record alone, as it would a real engine's jobs. A fleet
spec names it with `executor: {kind: "null"}` (a dry run, or `kraft serve` load-tested at
fleet scale: bench/serve_scale.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kraft.exec.base import RunRequest, RunStatus, log_file


def sleep_seconds(req: RunRequest) -> float:
    cmd = req.command
    if len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"):
        try:
            return max(0.0, float(cmd[1]))
        except ValueError:
            pass
    return 0.0


RUNNING, DONE = RunStatus(True, alive=True), RunStatus(False, 0)
STOPPED, LOST = RunStatus(False, -15), RunStatus(False, None, lost=True)


class NullExecutor:
    name = "null"
    capabilities = frozenset({"multi-node", "stops-at-once"})

    def __init__(self, clock: Callable[[], float] = time.time,
                 run_s: Callable[[RunRequest], float] = sleep_seconds,
                 end_at: Callable[[RunRequest], float] | None = None,
                 work_dir: Path = Path("/nonexistent")):
        """`end_at`, where given, says when an attempt ends (a replay gives the time its
        work is done, exactly) instead of now + `run_s`."""
        self.clock = clock
        self.run_s = run_s
        self.end_at = end_at
        self.work_dir = work_dir
        # (job, attempt) -> when it ends, for attempts not yet seen over: an attempt is
        # forgotten once a poll saw it end (its handles still carry its end, should it be
        # polled again after a restart), so memory follows what runs, not what ran.
        self.ends: dict[tuple[int, int], float] = {}
        # kept: a stopped attempt polled again must not look alive from its handles
        self.stopped: set[tuple[int, int]] = set()
        self.down: dict[str, str] = {}  # nodes to report lost (a test's hand on the engine)

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        key = (req.job_id, req.attempt)
        now = self.clock()
        self.ends[key] = self.end_at(req) if self.end_at else now + self.run_s(req)
        return [self._handle(key)] * (len(req.ranks) if only is None else len(only))

    def _handle(self, key: tuple[int, int]) -> int:
        return round(self.ends[key] * 1000)

    def _end(self, key: tuple[int, int], handles: list[int]) -> float | None:
        """When an attempt ends: as started here, or as its handles say (after a restart)."""
        end = self.ends.get(key)
        if end is None and handles and handles[0]:
            end = self.ends[key] = handles[0] / 1000
        return end

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        return self.status_many([(req, handles)])[0]

    def status_many(self, runs: list[tuple[RunRequest, list[int]]]) -> list[RunStatus]:
        now = self.clock()  # once for all: 10,000 running jobs are polled every step
        ends, stopped = self.ends, self.stopped
        out = []
        for req, handles in runs:
            key = (req.job_id, req.attempt)
            end = ends.get(key) or self._end(key, handles)
            status = (STOPPED if key in stopped else LOST if end is None else
                      RUNNING if now < end else DONE)
            if status is not RUNNING:  # over: the plane closes it now
                ends.pop(key, None)
            out.append(status)
        return out

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        self.stopped.add((req.job_id, req.attempt))

    kill = stop

    def nodes_down(self) -> dict[str, str]:
        return dict(self.down)

    def log_path(self, job_id: int, attempt: int) -> Path:
        return log_file(self.work_dir, job_id, attempt)

    def started(self, req: RunRequest, rank: int) -> bool:
        return (req.job_id, req.attempt) in self.ends

    def find(self, req: RunRequest) -> list[int | None]:
        key = (req.job_id, req.attempt)  # the same handles start gave
        return [self._handle(key) if key in self.ends else None for _ in req.ranks]

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        return []
