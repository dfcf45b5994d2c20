"""Request routers: which replica serves a request. The same code routes simulated replicas
(kraft.infer.replica) and live ones (kraft.infer.live): a candidate only needs
`outstanding`, `site` and `predicted_ttft_ms(prompt_tokens, now_s)`.

Residency is not a router's choice: the caller passes only replicas on sites the tenant's
residency allows, and refuses the request when there are none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Candidate(Protocol):
    site: str

    @property
    def outstanding(self) -> int: ...

    def predicted_ttft_ms(self, prompt_tokens: int, now_s: float) -> float: ...


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Candidate], prompt_tokens: int, now_s: float,
               rtt_ms: Mapping[str, float]) -> Candidate:
        self._next += 1
        return candidates[(self._next - 1) % len(candidates)]


class LeastOutstanding:
    """Fewest requests in flight (waiting or decoding); ties go to the nearer site."""

    name = "least-outstanding"

    def choose(self, candidates, prompt_tokens, now_s, rtt_ms):
        return min(candidates, key=lambda c: (c.outstanding, rtt_ms.get(c.site, 0.0)))


class SloAware:
    """Predict each replica's time to first token, network round trip included. Among the
    replicas predicted to meet the TTFT target, take the least loaded (spreading load keeps
    decode batches small, which keeps time per token low); if none is, take the fastest."""

    name = "slo-aware"

    def __init__(self, ttft_ms: float):
        self.ttft_ms = ttft_ms

    def choose(self, candidates, prompt_tokens, now_s, rtt_ms):
        best, best_ms, pick, pick_key = None, float("inf"), None, None
        for c in candidates:
            ms = rtt_ms.get(c.site, 0.0) + c.predicted_ttft_ms(prompt_tokens, now_s)
            if ms < best_ms:
                best, best_ms = c, ms
            if ms <= self.ttft_ms and (pick is None or (c.outstanding, ms) < pick_key):
                pick, pick_key = c, (c.outstanding, ms)
        return pick if pick is not None else best


ROUTERS = ("round-robin", "least-outstanding", "slo-aware")


def make_router(name: str, ttft_ms: float):
    if name == "round-robin":
        return RoundRobin()
    if name == "least-outstanding":
        return LeastOutstanding()
    if name == "slo-aware":
        return SloAware(ttft_ms)
    raise ValueError(f"unknown router {name!r}; known: {', '.join(ROUTERS)}")
