"""The declarative model of a data center: fleet (sites -> pods -> nodes), tenants, jobs.

These are the validated *inputs*. The scheduler works on compact runtime structures built from
them (kraft.cluster, kraft.sched.job), so validation cost is paid once.
"""

from __future__ import annotations

from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kraft.catalog import CATALOG


class Tier(StrEnum):
    """Service tiers, most important first."""

    RESERVED = "reserved"
    ON_DEMAND = "on-demand"
    SPOT = "spot"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]


_TIER_RANK = {Tier.RESERVED: 0, Tier.ON_DEMAND: 1, Tier.SPOT: 2}


class _Strict(BaseModel):
    # NaN and infinities are no figures: refused, as JSON and the databases would refuse them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NodeGroupSpec(_Strict):
    count: int = Field(1, ge=1, le=100_000, description="number of identical nodes")
    gpus: int = Field(ge=1, le=72, description="GPUs per node")
    model: str = Field(description="GPU model, a name from the catalog")

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if model not in CATALOG:
            raise ValueError(f"unknown GPU model {model!r}; allowed: {', '.join(CATALOG)}")
        return model


class PodSpec(_Strict):
    """An NVLink / InfiniBand domain (or a power feed): gangs prefer to stay inside one."""

    name: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=100_000,
                       description="replicate this pod; names get a -NNNN suffix")
    nodes: list[NodeGroupSpec] = Field(min_length=1)


class CoolingSpec(_Strict):
    """PUE against outdoor temperature: flat while outdoor air cools for free, then rising
    linearly as chillers take over. Defaults: a Nordic free-cooled site (Google's fleet PUE
    was 1.10 in 2023; Nordic free- or fjord-cooled sites report 1.1-1.2). The free-cooling
    limit follows ASHRAE TC 9.9's recommended inlet range (18-27 C) less an economiser
    approach of some 6-9 K; the hot end is Kraft's assumption, to be fitted per site."""

    pue_free: float = Field(1.10, ge=1.0, le=3.0)
    free_cooling_max_c: float = 18.0
    pue_hot: float = Field(1.35, ge=1.0, le=3.0)
    hot_c: float = 35.0
    wue_l_per_kwh: float = Field(0.0, ge=0, description="water per IT kWh (closed loop: ~0)")

    @model_validator(mode="after")
    def _ordered(self) -> CoolingSpec:
        if self.hot_c <= self.free_cooling_max_c or self.pue_hot < self.pue_free:
            raise ValueError("need hot_c > free_cooling_max_c and pue_hot >= pue_free")
        return self


class ContractSpec(_Strict):
    """Market-based (GHG Protocol Scope 2) inputs: the share of consumption covered by
    contractual instruments (PPA, guarantees of origin), their emission factor, and the
    residual mix factor for the rest. Kept apart from location-based figures, never mixed."""

    renewable_share: float = Field(0.0, ge=0.0, le=1.0)
    contract_g_per_kwh: float = Field(0.0, ge=0.0)
    residual_mix_g_per_kwh: float | None = Field(None, ge=0.0)
    # Hourly matching (24/7 carbon-free energy, docs/reporting.md): what supply is there in
    # each hour. Annual certificates (guarantees of origin) count for the market-based
    # figure above, not here.
    ppa_mw: float = Field(0.0, ge=0.0, description="carbon-free power delivered every hour "
                                                   "under PPAs (baseload), MW")
    onsite_mw: float = Field(0.0, ge=0.0, description="on-site carbon-free generation, MW")
    grid_cfe_share: float = Field(
        0.0, ge=0.0, le=1.0, description="the grid's carbon-free share, counted for what the "
        "PPAs and on-site supply do not cover in an hour (0: not counted)")

    @model_validator(mode="after")
    def _residual_known(self) -> ContractSpec:
        if self.renewable_share < 1.0 and self.residual_mix_g_per_kwh is None:
            raise ValueError("renewable_share below 1 needs residual_mix_g_per_kwh for the "
                             "uncovered consumption (AIB European Residual Mix, or your "
                             "supplier's figure)")
        return self

    @property
    def market_g_per_kwh(self) -> float:
        rest = 1.0 - self.renewable_share
        return self.renewable_share * self.contract_g_per_kwh + rest * (
            self.residual_mix_g_per_kwh or 0.0)


class ExecutorSpec(_Strict):
    """Which engine runs a site's jobs, and how to reach it. Kraft stays the scheduler (what
    starts, where, what is preempted); the engine executes (docs/engines.md)."""

    kind: Literal["local", "slurm", "ray", "null"] = Field(
        "local", description="local processes, Slurm, Ray, or null: runs nothing, each job "
                             "'runs' for the N of its `sleep N` command (dry runs, load tests)")
    partition: str | None = Field(None, description="Slurm partition (default: the cluster's)")
    address: str | None = Field(None, description="Ray dashboard URL, e.g. http://head:8265")
    nodes: list[str] = Field(
        default_factory=list,
        description="the engine's node names, in the order of this site's nodes in the spec; "
                    "empty: Kraft's own node names")
    gpu_devices: str | None = Field(
        None, description="local, sandboxed: the device file of GPU {gpu} on node {node}, e.g. "
                          "/dev/nvidia{gpu}; a job sees only those of its own GPUs")
    shared_devices: list[str] = Field(
        default_factory=list, description="device files every sandboxed job of the site sees, "
                                          "e.g. /dev/nvidiactl, /dev/nvidia-uvm")


class SiteSpec(_Strict):
    name: str = Field(min_length=1)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166 alpha-2")
    jurisdiction: str = Field(min_length=1, description="legal area, e.g. EEA, US")
    grid_zone: str = Field(min_length=1, description="Electricity Maps zone, e.g. NO-NO4")
    it_power_budget_mw: float = Field(gt=0)
    pods: list[PodSpec] = Field(min_length=1)
    host_overhead_share: float = Field(
        0.8, ge=0.0, le=3.0,
        description="host power (CPU, memory, network, fans) as a share of GPU power; "
                    "0.8: NVIDIA DGX H100 is 10.2 kW max for 8 x 700 W GPUs")
    cooling: CoolingSpec = Field(default_factory=CoolingSpec)
    gpu_power_cap_w: float | None = Field(
        None, gt=0, description="cap every GPU's power here; jobs run slower (docs/energy.md)")
    weather: str | None = Field(None, description="temperature series; none = 15 C always")
    price_zone: str | None = Field(None, description="day-ahead price series name")
    flat_price_eur_per_mwh: float | None = Field(
        None, ge=0, description="a flat tariff, where no price series is given")
    contract: ContractSpec = Field(default_factory=lambda: ContractSpec(
        renewable_share=0.0, residual_mix_g_per_kwh=0.0))
    heat_reuse_share: float = Field(0.0, ge=0.0, le=1.0,
                                    description="share of facility energy reused as heat")
    latency_ms: dict[str, float] = Field(default_factory=dict,
                                         description="network round trip to user regions")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @property
    def gpu_count(self) -> int:
        return sum(p.count * g.count * g.gpus for p in self.pods for g in p.nodes)

    @property
    def node_count(self) -> int:
        return sum(p.count * g.count for p in self.pods for g in p.nodes)

    @model_validator(mode="after")
    def _cap_above_idle(self) -> SiteSpec:
        if self.executor.nodes and len(self.executor.nodes) != self.node_count:
            raise ValueError(f"executor.nodes names {len(self.executor.nodes)} nodes; the site "
                             f"has {self.node_count}")
        if self.gpu_power_cap_w is not None:
            for pod in self.pods:
                for g in pod.nodes:
                    idle = CATALOG[g.model].idle_power_w
                    if self.gpu_power_cap_w <= idle:
                        raise ValueError(f"gpu_power_cap_w {self.gpu_power_cap_w} W is not above "
                                         f"the {g.model}'s idle power ({idle} W)")
        return self


class PricingSpec(_Strict):
    """What tenants pay per GPU-hour, by tier (EUR). Kraft's illustrative defaults."""

    reserved: float = Field(2.0, ge=0)
    on_demand: float = Field(3.0, ge=0, alias="on-demand")
    spot: float = Field(1.2, ge=0)

    def for_tier(self, tier: Tier) -> float:
        return {Tier.RESERVED: self.reserved, Tier.ON_DEMAND: self.on_demand,
                Tier.SPOT: self.spot}[tier]


MAX_NODES = 1_000_000  # 8 million GPUs at 8 per node; the largest bundled fleet has 25,002


class FleetSpec(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    source: str = Field("", description="where the fleet's shape comes from")
    sites: list[SiteSpec] = Field(min_length=1)
    gpu_hour_price_eur: PricingSpec = Field(default_factory=PricingSpec)

    @model_validator(mode="after")
    def _unique_names(self) -> FleetSpec:
        nodes = sum(s.node_count for s in self.sites)
        if nodes > MAX_NODES:  # the runtime state is a few hundred bytes per node
            raise ValueError(f"{nodes:,} nodes: at most {MAX_NODES:,} in one fleet")
        names = [s.name for s in self.sites]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"site names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    @property
    def gpu_count(self) -> int:
        return sum(s.gpu_count for s in self.sites)


class ResidencySpec(_Strict):
    """Where a tenant's jobs may run. Empty lists mean 'anywhere'."""

    jurisdictions: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)

    def allows(self, site: SiteSpec) -> bool:
        return ((not self.jurisdictions or site.jurisdiction in self.jurisdictions)
                and (not self.countries or site.country in self.countries)
                and (not self.sites or site.name in self.sites))

    def describe(self) -> str:
        parts = [f"{k}={','.join(v)}" for k, v in
                 (("jurisdiction", self.jurisdictions), ("country", self.countries),
                  ("site", self.sites)) if v]
        return " and ".join(parts) or "anywhere"


class TenantSpec(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="letters, digits, '.', '_' and '-'")
    tier: Tier = Tier.ON_DEMAND
    reserved_gpus: int = Field(0, ge=0, description="GPUs guaranteed to a reserved tenant")
    quota_gpus: int | None = Field(None, ge=1, description="cap on GPUs running at once")
    weight: float = Field(1.0, gt=0, description="fair-share weight")
    residency: ResidencySpec = Field(default_factory=ResidencySpec)
    region: str | None = Field(None, description="where the tenant's users are, for latency")
    match: list[str] = Field(default_factory=list,
                             description="glob patterns of trace users/VCs mapped here")
    # Live: the Unix account this tenant's jobs run as (docs/security.md)
    user: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
                             description="account of its jobs; default kraft-<name>, "
                                         "created by a service that runs as root")
    group: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    paths: list[str] = Field(default_factory=list, max_length=64,
                             description="host paths (datasets) its sandboxed jobs may use")
    slurm_account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                      description="Slurm account of its jobs (fair share)")

    @field_validator("paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        for p in paths:
            if not p.startswith("/") or "\0" in p or "/../" in f"{p}/":
                raise ValueError(f"{p!r}: give an absolute path without '..'")
        return paths

    @model_validator(mode="after")
    def _reservation_needs_tier(self) -> TenantSpec:
        if self.reserved_gpus and self.tier is not Tier.RESERVED:
            raise ValueError(f"reserved_gpus={self.reserved_gpus} needs tier 'reserved', "
                             f"got {self.tier.value!r}")
        if self.quota_gpus is not None and self.quota_gpus < self.reserved_gpus:
            raise ValueError(f"quota_gpus ({self.quota_gpus}) is below reserved_gpus "
                             f"({self.reserved_gpus})")
        return self


class TenantsSpec(_Strict):
    """Tenants plus the rule that maps a trace's users or virtual clusters onto them.

    Rule: a trace tenant name maps to the first tenant whose name equals it or whose `match`
    globs match it; anything else goes to `default`.
    """

    tenants: list[TenantSpec] = Field(default_factory=list)
    default: TenantSpec = TenantSpec(name="default", tier=Tier.SPOT)

    @model_validator(mode="after")
    def _unique(self) -> TenantsSpec:
        names = [t.name for t in self.tenants] + [self.default.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"tenant names must be unique; repeated: {', '.join(sorted(dup))}")
        if self.default.reserved_gpus:
            raise ValueError("the default tenant cannot hold a reservation")
        return self

    def resolve(self, trace_tenant: str) -> TenantSpec:
        for t in self.tenants:
            if t.name == trace_tenant or any(fnmatchcase(trace_tenant, p) for p in t.match):
                return t
        return self.default

    @property
    def all(self) -> list[TenantSpec]:
        return [*self.tenants, self.default]


class JobFields(_Strict):
    """What a job is, as a tenant submits it to the API and as a trace row describes it: one
    set of fields for both bodies (the API's body is these, the tenant comes from the token)."""

    name: str = Field("job", min_length=1, max_length=200)
    gpus: int = Field(ge=1, le=1_000_000)
    gpu_model: str | None = None
    time_limit_s: float | None = Field(None, gt=0, le=365 * 86400)
    checkpoint_interval_s: float | None = Field(None, gt=0)
    restart_cost_s: float = Field(0.0, ge=0, le=86400)
    preemptible: bool = True
    flex_window_s: float = Field(
        0.0, ge=0, le=365 * 86400,
        description="may start up to this long after submission (temporal shifting); "
                    "a live job with a window gives its time_limit_s, what shifting plans with")
    deadline_s: float | None = Field(
        None, gt=0, le=365 * 86400,
        description="must end within this long of submission: the window is the deadline "
                    "less the time limit (give one of flex_window_s and deadline_s)")
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict, max_length=200,
                                description="extra environment of the job's processes")

    @field_validator("gpu_model")
    @classmethod
    def _known_model(cls, model: str | None) -> str | None:
        if model is not None and model not in CATALOG:
            raise ValueError(f"unknown GPU model {model!r}; allowed: {', '.join(CATALOG)}")
        return model

    @model_validator(mode="after")
    def _window(self):
        if self.deadline_s is not None:
            if self.flex_window_s:
                raise ValueError("give flex_window_s or deadline_s, not both")
            if self.time_limit_s is None:
                raise ValueError("deadline_s needs time_limit_s: the window is the deadline "
                                 "less the time limit")
            if self.deadline_s < self.time_limit_s:
                raise ValueError(f"deadline_s {self.deadline_s:g} is shorter than "
                                 f"time_limit_s {self.time_limit_s:g}")
        return self

    @property
    def window_s(self) -> float:
        """How long after submission the job may start."""
        if self.deadline_s is not None:
            return self.deadline_s - (self.time_limit_s or 0.0)
        return self.flex_window_s


class JobSpec(JobFields):
    """A job in the body that runs it: its tenant and, in a simulation, its known run time."""

    tenant: str = Field("default", min_length=1)
    duration_s: float | None = Field(None, gt=0, description="known run time (simulation)")

