"""Site weighers: which of a job's allowed pools to try first. A weigher ranks, it never
allows or forbids (residency, GPU model and the power budget are filters in the core)."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Protocol

from kraft.sched.job import TenantState
from kraft.sched.shift import SignalShift
from kraft.spec.models import SiteSpec


class Weigher(Protocol):
    name: str

    def key(self, site: SiteSpec, tenant: TenantState, now: float) -> float:
        """Lower is better."""

    def depends_on(self, tenant: TenantState, now: float) -> Hashable:
        """What the ranking depends on besides the pools (for caching it)."""

    def describe(self, site: SiteSpec, tenant: TenantState, now: float) -> str: ...


class SignalWeigher:
    """Lowest grid carbon intensity (or price) this hour first."""

    def __init__(self, signals: SignalShift):
        self.signals = signals
        self.name = signals.by

    def key(self, site: SiteSpec, tenant: TenantState, now: float) -> float:
        return self.signals.value_at(site.name, now)

    def depends_on(self, tenant: TenantState, now: float) -> Hashable:
        return int(now // 3600)

    def describe(self, site: SiteSpec, tenant: TenantState, now: float) -> str:
        unit = "g/kWh" if self.name == "carbon" else "EUR/MWh"
        return f"{self.name} {self.key(site, tenant, now):.0f} {unit} now"


class LatencyWeigher:
    """Closest to the tenant's users (its `region`) first; sites without a figure last."""

    name = "latency"

    def key(self, site: SiteSpec, tenant: TenantState, now: float) -> float:
        region = tenant.spec.region
        return site.latency_ms.get(region, math.inf) if region else math.inf

    def depends_on(self, tenant: TenantState, now: float) -> Hashable:
        return tenant.spec.region

    def describe(self, site: SiteSpec, tenant: TenantState, now: float) -> str:
        return f"{self.key(site, tenant, now):g} ms to {tenant.spec.region}"
