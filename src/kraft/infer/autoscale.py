"""The replica autoscaler's decision, shared by the simulator and the live service.

Queue metric: like Kubernetes' HPA, desired = ceil(outstanding / target per replica), clamped
to the bounds. SLO metric: one more replica while the share of recent requests meeting the
SLO is below the target percentile, one fewer when it is met with the queue under half the
target. Scale-up is immediate (replicas that are still starting count as capacity, so one
burst does not start a replica per tick); scale-down removes one replica at a time after a
cooldown, and the replica drains before it stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kraft.spec.inference import AutoscaleSpec, ReplicaBounds


@dataclass(frozen=True)
class ScaleInput:
    now_s: float
    replicas: int  # ready or starting, not draining
    outstanding: int  # requests waiting or decoding across the service
    attainment: float | None  # share meeting the SLO in the window; None if none finished
    target_attainment: float  # the SLO percentile / 100
    last_change_s: float


def desired_replicas(spec: AutoscaleSpec, bounds: ReplicaBounds, x: ScaleInput) -> int:
    cooled = x.now_s - x.last_change_s >= spec.cooldown_s
    if spec.metric == "queue":
        want = math.ceil(x.outstanding / spec.target_queue)
    elif x.attainment is not None and x.attainment < x.target_attainment:
        want = x.replicas + 1
    elif x.outstanding < spec.target_queue / 2 * max(1, x.replicas):
        want = x.replicas - 1
    else:
        want = x.replicas
    want = max(bounds.min, min(bounds.max, want))
    if want < x.replicas:
        return x.replicas - 1 if cooled else x.replicas
    return want
