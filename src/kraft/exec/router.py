"""One executor per site, chosen by the fleet spec (`sites[].executor`); the router hands each
job to the engine of the site Kraft placed it on. All engines share one work folder for logs
and exit files, so `kraft logs` reads the same place whatever ran the job."""

from __future__ import annotations

from pathlib import Path

from kraft.cluster.state import ClusterState
from kraft.exec.base import Executor, RunRequest, RunStatus, statuses
from kraft.exec.identity import Isolation
from kraft.exec.local import LocalExecutor


def make_executor(cluster: ClusterState, work_dir: Path,
                  isolation: Isolation | None = None) -> Executor:
    by_site: dict[str, Executor] = {}
    site_of_node: dict[str, str] = {}
    names_by_site: dict[str, list[str]] = {}
    for node, name in enumerate(cluster.node_name):
        site = cluster.pools[cluster.node_pool[node]].site
        site_of_node[name] = site.name
        names_by_site.setdefault(site.name, []).append(name)
    for site in cluster.fleet.sites:
        spec = site.executor
        names = dict(zip(names_by_site[site.name], spec.nodes)) if spec.nodes else {}
        if spec.kind == "local":
            by_site[site.name] = LocalExecutor(work_dir, isolation, spec.gpu_devices,
                                               tuple(spec.shared_devices), names)
        elif spec.kind == "null":
            from kraft.exec.null import NullExecutor

            by_site[site.name] = NullExecutor(work_dir=work_dir)
        elif spec.kind == "slurm":
            from kraft.exec.slurm import SlurmExecutor

            by_site[site.name] = SlurmExecutor(work_dir, spec.partition, names, isolation)
        elif spec.kind == "ray":
            from kraft.exec.ray import RayExecutor

            if not spec.address:
                raise ValueError(f"site {site.name}: executor ray needs an address "
                                 f"(the Ray dashboard URL, e.g. http://127.0.0.1:8265)")
            try:
                by_site[site.name] = RayExecutor(work_dir, spec.address, names,
                                                 isolation=isolation)
            except Exception as e:  # unreachable, wrong version: say so, no traceback
                raise ValueError(f"site {site.name}: Ray at {spec.address}: {e}") from e
    if len(by_site) == 1:
        return next(iter(by_site.values()))
    return SiteRouter(by_site, site_of_node)


class SiteRouter:
    name = "router"

    def __init__(self, by_site: dict[str, Executor], site_of_node: dict[str, str]):
        self.by_site = by_site
        self.site_of_node = site_of_node
        self.capabilities = frozenset.intersection(*(e.capabilities for e in by_site.values()))

    def _for(self, req: RunRequest) -> Executor:
        return self.by_site[self.site_of_node[req.ranks[0].node]]

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        return self._for(req).start(req, only)

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        return self._for(req).status(req, handles)

    def status_many(self, runs: list[tuple[RunRequest, list[int]]]) -> list[RunStatus]:
        """One query per engine, each for its own runs."""
        by_engine: dict[int, list[int]] = {}
        for k, (req, _) in enumerate(runs):
            by_engine.setdefault(id(self._for(req)), []).append(k)
        out: list[RunStatus | None] = [None] * len(runs)
        for ks in by_engine.values():
            engine = self._for(runs[ks[0]][0])
            for k, status in zip(ks, statuses(engine, [runs[k] for k in ks])):
                out[k] = status
        return out

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        self._for(req).stop(req, handles)

    def nodes_down(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ex in {id(e): e for e in self.by_site.values()}.values():
            if hasattr(ex, "nodes_down"):
                out.update(ex.nodes_down())
        return out

    def log_path(self, job_id: int, attempt: int) -> Path:
        return next(iter(self.by_site.values())).log_path(job_id, attempt)

    def kill(self, req: RunRequest, handles: list[int]) -> None:
        self._for(req).kill(req, handles)

    def started(self, req: RunRequest, rank: int) -> bool:
        return self._for(req).started(req, rank)

    def find(self, req: RunRequest) -> list[int | None]:
        return self._for(req).find(req)

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        """Each engine's, once (local sites share one work folder, hence one list)."""
        seen, out = set(), []
        for ex in {id(e): e for e in self.by_site.values()}.values():
            for req, handles in ex.orphans(current):
                if (req.job_id, req.attempt) not in seen:
                    seen.add((req.job_id, req.attempt))
                    out.append((req, handles))
        return out
