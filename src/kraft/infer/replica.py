"""One simulated model replica with continuous batching (Orca / vLLM style).

Each iteration is either a prefill of the waiting requests that fit (prefill first, as vLLM
schedules by default: the new prompts' first tokens come out at its end) or one decode step
of every running sequence. A request is admitted only when its whole KV cache (prompt +
output) fits beside the others, so nothing is evicted mid-flight.

Speed: between two events that change the batch (an arrival, a completion) the decode batch
is constant, so the replica jumps over k identical iterations at once instead of stepping
token by token. `advance_to(t)` runs the replica until its clock passes t; the simulator
calls it before routing a request that arrives at t, so the replica's state is exact at every
decision.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from kraft.infer.latency import ReplicaTiming


class Replica:
    def __init__(self, index: int, site: str, timing: ReplicaTiming, kv_tokens: int,
                 max_batch: int, started_s: float, ready_s: float,
                 prompt: np.ndarray, output: np.ndarray,
                 first_token_s: np.ndarray, finish_s: np.ndarray, slot: int = 0):
        self.index, self.site, self.timing = index, site, timing
        self.kv_tokens, self.max_batch = kv_tokens, max_batch
        self.started_s, self.ready_s = started_s, ready_s
        self.slot = slot  # where on the fleet it runs (kraft.infer.sim's replica slots)
        self.stopped_s: float | None = None
        self.draining = False
        self.drain_s = 0.0
        # Shared per-request arrays of the whole simulation, written here.
        self._prompt, self._output = prompt, output
        self._first, self._finish = first_token_s, finish_s
        self.clock_s = ready_s
        self.waiting: deque[int] = deque()
        self.waiting_prompt_tokens = 0
        self.running: list[tuple[int, int]] = []  # heap of (iteration it ends at, request)
        self.iterations = 0  # decode iterations done: a running request's progress clock
        self.context_tokens = 0.0  # KV tokens the running sequences hold now
        self.kv_reserved = 0  # prompt + output of every admitted request
        self.busy_s = 0.0
        self.last_done_s = ready_s
        self.dropped: list[int] = []  # longer than the whole KV cache: can never run

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, request: int) -> None:
        self.waiting.append(request)
        self.waiting_prompt_tokens += int(self._prompt[request])

    def predicted_ttft_ms(self, prompt_tokens: int, now_s: float) -> float:
        """Rough first-token time for a new request here, network aside: the current
        iteration ends, then one prefill of everything waiting plus this prompt."""
        tokens = self.waiting_prompt_tokens + prompt_tokens
        wait_s = max(0.0, self.clock_s - now_s)
        return wait_s * 1e3 + self.timing.prefill_ms(tokens, tokens * prompt_tokens)

    def advance_to(self, t_s: float) -> None:
        while self.waiting or self.running:
            if self.clock_s >= t_s:
                return
            if not self._prefill():
                self._decode(t_s)
        self.clock_s = max(self.clock_s, t_s) if t_s != math.inf else self.clock_s

    def _prefill(self) -> bool:
        admitted, tokens, squares = [], 0, 0
        while self.waiting and len(self.running) + len(admitted) < self.max_batch:
            r = self.waiting[0]
            need = int(self._prompt[r] + self._output[r])
            if need > self.kv_tokens:  # cannot run even alone
                self.waiting.popleft()
                self.waiting_prompt_tokens -= int(self._prompt[r])
                self.dropped.append(r)
                continue
            if self.kv_reserved + need > self.kv_tokens:
                break
            self.waiting.popleft()
            p = int(self._prompt[r])
            self.waiting_prompt_tokens -= p
            self.kv_reserved += need
            admitted.append(r)
            tokens += p
            squares += p * p
        if not admitted:
            return False
        dt = self.timing.prefill_ms(tokens, squares) / 1e3
        self.clock_s += dt
        self.busy_s += dt
        for r in admitted:
            self._first[r] = self.clock_s
            left = int(self._output[r]) - 1  # the prefill yields the first token
            if left == 0:
                self._done(r)
            else:
                heapq.heappush(self.running, (self.iterations + left, r))
                self.context_tokens += self._prompt[r] + 1
        return True

    def _decode(self, t_s: float) -> None:
        batch = len(self.running)
        to_next_done = self.running[0][0] - self.iterations
        one = self.timing.decode_ms(batch, self.context_tokens) / 1e3
        # Stop at the first iteration boundary at or after t_s, or when a sequence ends.
        k = to_next_done if t_s == math.inf else min(
            to_next_done, max(1, math.ceil((t_s - self.clock_s) / one)))
        # The context grows by one token per sequence per iteration: time at the middle.
        dt = k * self.timing.decode_ms(batch, self.context_tokens + batch * (k - 1) / 2) / 1e3
        self.clock_s += dt
        self.busy_s += dt
        self.iterations += k
        self.context_tokens += batch * k
        while self.running and self.running[0][0] <= self.iterations:
            _, r = heapq.heappop(self.running)
            self.context_tokens -= self._prompt[r] + self._output[r]
            self._done(r)

    def _done(self, r: int) -> None:
        self._finish[r] = self.clock_s
        self.kv_reserved -= int(self._prompt[r] + self._output[r])
        self.last_done_s = self.clock_s
