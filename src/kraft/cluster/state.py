"""Free GPUs by node, pod and pool, with indexes that make gang placement O(GPUs per node).

A *pool* is the set of nodes of one site with one GPU model and one node size. A site's IT
power budget is a placement filter: a gang starts only if the site's headroom holds it. A gang is
placed inside one pool (one site, one GPU model): all-or-nothing, on the fewest nodes, inside
one pod where possible, best fit to limit fragmentation.

Indexes, kept exact on every allocate/release:
- `by_free[k]`: nodes of the pool with exactly k free GPUs (an insertion-ordered dict used as
  an ordered set, so choices are deterministic);
- `pod_idle[p]`: fully idle nodes of the pool in pod p;
- `pods_by_idle[c]`: pods having exactly c fully idle nodes of the pool.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kraft.catalog import CATALOG
from kraft.energy.models import cap_slowdown
from kraft.energy.power import gpu_power
from kraft.spec.models import FleetSpec, SiteSpec

Placement = tuple[tuple[int, int], ...]  # ((node index, GPUs taken), ...)


@dataclass(eq=False, slots=True)
class SitePower:
    """A site's IT power budget and what is left of it, from `kraft.energy.power` at
    utilisation 1 (the worst case)."""

    site: SiteSpec
    budget_w: float
    idle_w: float = 0.0  # the whole site idle
    headroom_w: float = 0.0  # budget - idle - extra power of allocated GPUs


@dataclass(eq=False, slots=True)
class Pool:
    index: int
    site: SiteSpec
    model: str
    gpus_per_node: int
    nodes: list[int] = field(default_factory=list)
    total_gpus: int = 0
    free_gpus: int = 0
    idle_nodes: int = 0  # nodes with every GPU free
    by_free: list[dict[int, None]] = field(default_factory=list)
    pod_idle: dict[int, dict[int, None]] = field(default_factory=dict)
    pods_by_idle: list[dict[int, None]] = field(default_factory=list)
    power: SitePower | None = None
    extra_w_per_gpu: float = 0.0  # busy (capped) minus idle, host overhead included
    slowdown: float = 1.0  # run-time factor under the site's GPU power cap

    @property
    def label(self) -> str:
        return f"{self.site.name}/{self.model}x{self.gpus_per_node}"


class ClusterState:
    """Mutable capacity of a fleet. Only the scheduler changes it."""

    def __init__(self, fleet: FleetSpec):
        self.fleet = fleet
        self.node_free: list[int] = []
        self.node_pool: list[int] = []
        self.node_pod: list[int] = []
        self.node_name: list[str] = []
        # False: drained or down, takes no new work (its running jobs go on until they end)
        self.node_up: list[bool] = []
        self.pod_name: list[str] = []
        self.pools: list[Pool] = []
        self.site_power: list[SitePower] = []
        pool_of: dict[tuple[str, str, int], Pool] = {}
        for site in fleet.sites:
            power = SitePower(site, site.it_power_budget_mw * 1e6)
            self.site_power.append(power)
            for pod_spec in site.pods:
                for r in range(pod_spec.count):
                    pod_label = pod_spec.name if pod_spec.count == 1 else f"{pod_spec.name}-{r:04d}"
                    pod = len(self.pod_name)
                    self.pod_name.append(f"{site.name}/{pod_label}")
                    n_in_pod = 0
                    for group in pod_spec.nodes:
                        key = (site.name, group.model, group.gpus)
                        pool = pool_of.get(key)
                        if pool is None:
                            pool = Pool(len(self.pools), site, group.model, group.gpus)
                            pool.by_free = [{} for _ in range(group.gpus + 1)]
                            pool.power = power
                            pool.extra_w_per_gpu = gpu_power(site, group.model).extra_w
                            pool.slowdown = cap_slowdown(CATALOG[group.model],
                                                         site.gpu_power_cap_w)
                            pool_of[key] = pool
                            self.pools.append(pool)
                        idle_w = gpu_power(site, group.model).idle_w * group.gpus
                        for _ in range(group.count):
                            node = len(self.node_free)
                            self.node_free.append(group.gpus)
                            self.node_up.append(True)
                            self.node_pool.append(pool.index)
                            self.node_pod.append(pod)
                            # site/pod-nNNN: pods of two sites may share a name
                            self.node_name.append(f"{site.name}/{pod_label}-n{n_in_pod:03d}")
                            n_in_pod += 1
                            pool.nodes.append(node)
                            pool.total_gpus += group.gpus
                            power.idle_w += idle_w
                            pool.by_free[group.gpus][node] = None
                            pool.pod_idle.setdefault(pod, {})[node] = None
        for pool in self.pools:
            pool.free_gpus = pool.total_gpus
            pool.idle_nodes = len(pool.nodes)
            most = max(len(v) for v in pool.pod_idle.values())
            pool.pods_by_idle = [{} for _ in range(most + 1)]
            for pod, idle in pool.pod_idle.items():
                pool.pods_by_idle[len(idle)][pod] = None
        for power in self.site_power:
            power.headroom_w = power.budget_w - power.idle_w
            if power.headroom_w < 0:
                raise ValueError(
                    f"site {power.site.name}: IT power budget {power.budget_w / 1e6:.2f} MW is "
                    f"below its idle draw {power.idle_w / 1e6:.2f} MW")
        self.total_gpus = sum(p.total_gpus for p in self.pools)
        self.free_gpus = self.total_gpus  # free on nodes in placement (up)
        self.allocated_gpus = 0  # booked by jobs, on any node

    # ---- placement -------------------------------------------------------------------------

    def place(self, pool: Pool, gpus: int) -> Placement | None:
        """Best placement of a gang of `gpus` in `pool`, or None. Does not allocate."""
        if gpus > pool.free_gpus or gpus * pool.extra_w_per_gpu > pool.power.headroom_w:
            return None
        g = pool.gpus_per_node
        if gpus <= g:  # one node: the fullest node that still fits (best fit)
            by_free = pool.by_free
            for k in range(gpus, g + 1):
                if by_free[k]:
                    return ((next(iter(by_free[k])), gpus),)
            return None
        whole, rest = divmod(gpus, g)
        rest_node = None
        if rest:  # the remainder goes to the fullest partly used node that holds it
            for k in range(rest, g):
                if pool.by_free[k]:
                    rest_node = next(iter(pool.by_free[k]))
                    break
        need_idle = whole + (1 if rest and rest_node is None else 0)
        if need_idle > pool.idle_nodes:
            return None
        idle = self.pick_idle_nodes(pool, need_idle)
        if idle is None:
            return None
        placed = [(n, g) for n in idle[:whole]]
        if rest:
            placed.append((idle[whole] if rest_node is None else rest_node, rest))
        return tuple(placed)

    @staticmethod
    def pick_idle_nodes(pool: Pool, count: int) -> list[int] | None:
        """`count` fully idle nodes: inside the one pod that fits most tightly if any does,
        else from the emptiest pods first (fewest pods)."""
        pods_by_idle = pool.pods_by_idle
        for c in range(count, len(pods_by_idle)):
            if pods_by_idle[c]:
                pod = next(iter(pods_by_idle[c]))
                return list(pool.pod_idle[pod])[:count]
        nodes: list[int] = []
        for c in range(len(pods_by_idle) - 1, 0, -1):
            for pod in pods_by_idle[c]:
                nodes.extend(pool.pod_idle[pod])
                if len(nodes) >= count:
                    return nodes[:count]
        return None

    # ---- bookkeeping -----------------------------------------------------------------------

    def allocate(self, placement: Placement) -> None:
        for node, k in placement:
            self._change(node, -k)

    def release(self, placement: Placement) -> None:
        for node, k in placement:
            self._change(node, k)

    def set_up(self, node: int, up: bool) -> None:
        """Take a node out of placement (drained, down) or put it back. Its free GPUs leave
        or rejoin the indexes and the free counts; allocated GPUs stay booked until their jobs
        end, and their power stays in the site's budget."""
        if self.node_up[node] == up:
            return
        pool = self.pools[self.node_pool[node]]
        free = self.node_free[node]
        sign = 1 if up else -1
        if up:
            self.node_up[node] = True
            pool.by_free[free][node] = None
        else:
            del pool.by_free[free][node]
        if free == pool.gpus_per_node:
            self._idle_change(pool, node, idle=up)
        pool.free_gpus += sign * free
        self.free_gpus += sign * free
        if not up:
            self.node_up[node] = False

    def _idle_change(self, pool: Pool, node: int, idle: bool) -> None:
        pod = self.node_pod[node]
        members = pool.pod_idle[pod]
        del pool.pods_by_idle[len(members)][pod]
        if idle:
            members[node] = None
            pool.idle_nodes += 1
        else:
            del members[node]
            pool.idle_nodes -= 1
        pool.pods_by_idle[len(members)][pod] = None

    def _change(self, node: int, delta: int) -> None:
        pool = self.pools[self.node_pool[node]]
        old = self.node_free[node]
        new = old + delta
        if new < 0 or new > pool.gpus_per_node:
            raise RuntimeError(f"node {self.node_name[node]}: free GPUs would become {new}")
        self.allocated_gpus -= delta
        if not self.node_up[node]:  # out of placement: only its count and power change
            self.node_free[node] = new
            pool.power.headroom_w += delta * pool.extra_w_per_gpu
            return
        g = pool.gpus_per_node
        del pool.by_free[old][node]
        pool.by_free[new][node] = None
        self.node_free[node] = new
        pool.free_gpus += delta
        self.free_gpus += delta
        pool.power.headroom_w += delta * pool.extra_w_per_gpu
        if old == g or new == g:
            self._idle_change(pool, node, idle=new == g)

    def nodes_of(self, target: str) -> list[int]:
        """Node indices of a node (`site/pod-n000`), a pod (`site/pod`) or a site (`site`)."""
        index = self.node_index()
        if target in index and "/" in target:
            return [index[target]]
        pods = [p for p, name in enumerate(self.pod_name) if name == target]
        if pods:
            return [n for n, p in enumerate(self.node_pod) if p in pods]
        sites = [n for n, pool in enumerate(self.node_pool)
                 if self.pools[pool].site.name == target]
        if sites:
            return sites
        raise ValueError(f"no node, pod or site {target!r} in fleet {self.fleet.name!r} "
                         f"(a node is site/pod-nNNN, a pod site/pod, a site its name)")

    def node_index(self) -> dict[str, int]:
        """Node name -> index; also the name a single-site fleet's records used before
        nodes carried their site (`pod-n000`), where it names one node only."""
        index = {n: i for i, n in enumerate(self.node_name)}
        short = Counter(n.split("/", 1)[1] for n in self.node_name)
        index.update({n.split("/", 1)[1]: i for i, n in enumerate(self.node_name)
                      if short[n.split("/", 1)[1]] == 1})
        return index

    def describe(self, placement: Placement) -> str:
        return ",".join(f"{self.node_name[n]}:{k}" for n, k in placement)
