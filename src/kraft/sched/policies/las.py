"""Discretised least attained service (Tiresias, NSDI'19), preemptive.

Attained service is GPU-seconds run so far. Jobs start in the top queue and drop one queue each
time they cross a threshold; a queue is served before the ones below it, FIFO inside. A waiting
job may preempt running jobs of a lower queue. The default thresholds (1 and 10 GPU-hours) are
Kraft's choice, not the paper's; pass `thresholds_gpu_s` to change them. Tiresias' starvation
guard (promotion after long waits) is not implemented.
"""

import heapq
from collections.abc import Iterator

from kraft.sched.job import Job
from kraft.sched.policy import Fill, SortedQueue, register


@register
class Las(SortedQueue):
    name = "las"
    fill = Fill.GREEDY
    preemptive = True

    def __init__(self, thresholds_gpu_s: tuple[float, ...] = (3600.0, 36000.0)):
        super().__init__()
        if list(thresholds_gpu_s) != sorted(thresholds_gpu_s) or min(thresholds_gpu_s) <= 0:
            raise ValueError(f"las thresholds must be positive and increasing, "
                             f"got {thresholds_gpu_s}")
        self.thresholds = tuple(thresholds_gpu_s)
        self.levels: list[dict[int, Job]] = [{} for _ in range(len(self.thresholds) + 1)]
        self.level_of: dict[int, int] = {}  # running job id -> its queue
        self.demotions: list[tuple[float, int, int, Job]] = []  # (time, id, epoch, job)

    def _level(self, attained_gpu_s: float) -> int:
        return sum(1 for t in self.thresholds if attained_gpu_s >= t)

    def key(self, job: Job, now: float) -> tuple:
        return (self._level(job.gpus * job.executed_s), job.order_s, job.id)

    def on_start(self, job: Job, now: float) -> None:
        self._file(job, self._level(job.gpus * job.executed_s), now)

    def _file(self, job: Job, level: int, now: float) -> None:
        self.levels[level][job.id] = job
        self.level_of[job.id] = level
        if level < len(self.thresholds):
            attained = job.gpus * (job.executed_s + now - job.start_s)
            cross_s = now + (self.thresholds[level] - attained) / job.gpus
            heapq.heappush(self.demotions, (cross_s, job.id, job.epoch, job))

    def on_stop(self, job: Job, now: float) -> None:
        del self.levels[self.level_of.pop(job.id)][job.id]

    def tick(self, now: float) -> None:
        heap = self.demotions
        while heap and heap[0][0] <= now:
            _, job_id, epoch, job = heapq.heappop(heap)
            level = self.level_of.get(job_id)
            if level is None or job.epoch != epoch:
                continue  # stopped or restarted since
            del self.levels[level][job_id]
            self._file(job, level + 1, now)

    def next_wakeup(self) -> float | None:
        heap = self.demotions
        while heap and (heap[0][1] not in self.level_of or heap[0][3].epoch != heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def victims(self, job: Job, now: float) -> Iterator[Job]:
        mine = job.key[0]
        for level in range(len(self.levels) - 1, mine, -1):
            yield from reversed(self.levels[level].values())  # latest started first
