"""The one construction of the brain: `kraft simulate` and `kraft serve` both call
`make_scheduler` with the same options, so the twin and the live service schedule alike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kraft.cluster.state import ClusterState
from kraft.energy.books import EnergyInputs, signal_by_site
from kraft.sched.job import TenantState
from kraft.sched.policy import make_policy
from kraft.sched.scheduler import Scheduler, SchedulerConfig
from kraft.sched.shift import SignalShift
from kraft.sched.weighers import LatencyWeigher, SignalWeigher, Weigher
from kraft.signals.forecast import make_forecast


@dataclass(frozen=True)
class SchedulingOptions:
    """What a scheduler is made of besides the fleet and tenants (docs/scheduler.md)."""

    policy: str = "backfill"
    policy_params: dict = field(default_factory=dict)
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    shift_by: str | None = None  # carbon | price: defer flexible jobs within their window
    prefer: str | None = None  # carbon | price | latency: the site weigher
    forecast: str = "oracle"  # what shifting plans with (kraft.signals.forecast)
    # a maintenance plan, (node|pod|site, start_s, end_s) each, on the scheduler's clock (the
    # twin's; the live service keeps its windows in the database, kraft.control.nodes)
    maintenance: tuple[tuple[str, float, float], ...] = ()

    def as_dict(self) -> dict:
        return {"policy": self.policy, "policy_params": dict(self.policy_params),
                "config": vars(self.config), "shift_by": self.shift_by, "prefer": self.prefer,
                "forecast": self.forecast, "maintenance": [list(w) for w in self.maintenance]}

    @classmethod
    def from_dict(cls, d: dict) -> SchedulingOptions:
        return cls(d["policy"], d["policy_params"], SchedulerConfig(**d["config"]),
                   d["shift_by"], d["prefer"], d["forecast"],
                   tuple(tuple(w) for w in d.get("maintenance", ())))


def make_scheduler(cluster: ClusterState, tenants: Iterable[TenantState],
                   options: SchedulingOptions, energy: EnergyInputs | None = None,
                   origin_s: float = 0.0) -> Scheduler:
    """`energy`: the sites' signals, needed by shifting and by the carbon or price weigher.
    `origin_s`: the epoch second of hour 0 of the signals (the twin: 0; live: 1 January)."""
    shift = None
    if options.shift_by is not None:
        if energy is None:
            raise ValueError("temporal shifting needs the signals: run with the energy books")
        shift = SignalShift(signal_by_site(energy, options.shift_by), options.shift_by,
                            make_forecast(options.forecast), origin_s)
    weigher: Weigher | None = None
    if options.prefer == "latency":
        weigher = LatencyWeigher()
    elif options.prefer is not None:
        if energy is None:
            raise ValueError("--prefer carbon|price needs the signals: keep the energy books")
        weigher = SignalWeigher(SignalShift(signal_by_site(energy, options.prefer),
                                            options.prefer, origin_s=origin_s))
    policy = make_policy(options.policy, **options.policy_params)
    sched = Scheduler(cluster, tenants, policy, options.config, shift, weigher)
    if options.maintenance:
        sched.set_maintenance([(n, start, end) for target, start, end in options.maintenance
                               for n in cluster.nodes_of(target)])
    return sched
