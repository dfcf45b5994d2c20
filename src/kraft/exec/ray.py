"""The Ray executor: Kraft decides, Ray executes.

A job attempt is one Ray job (Jobs API), submission id `kraft-<deployment>-<job>-<attempt>`,
whose driver (`kraft.exec.ray_gang`) reserves the gang as a placement group pinned to Kraft's
nodes and runs one task per rank. The submission id is the handle: after a control-plane
restart the attempt is found by it and never submitted twice (Ray refuses a second submission
with the same id). Stop kills the driver; its placement group and tasks go with it. Logs come
from the Jobs API into the job's log file, so `kraft logs` reads them like any other job's.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid

from kraft.exec.base import ExitFiles, Rank, RunRequest, RunStatus, launcher_env
from kraft.exec.identity import job_env, work_dir

LIVE = {"PENDING", "RUNNING"}
LOG_EVERY_S = 1.0  # copy a running job's log from Ray at most this often


class RayExecutor(ExitFiles):
    name = "ray"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def __init__(self, work_dir, address: str, node_names: dict[str, str] | None = None,
                 python: str = sys.executable, isolation=None):
        super().__init__(work_dir)
        self.isolation = isolation
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(address)
        self.address = address.rstrip("/")
        self.node_names = node_names or {}  # Kraft node name -> the Ray node's resource name
        self.python = python  # on the Ray head: an interpreter with Kraft installed
        self.logged_at: dict[str, float] = {}
        self.stopped: set[str] = set()  # submission ids asked to stop
        # Job ids restart at 1 in every Kraft deployment; submission ids must not collide on
        # a shared Ray cluster: a random name per work folder, kept across restarts.
        name_file = self.work_dir / "ray-deployment"
        if not name_file.exists():
            name_file.write_text(uuid.uuid4().hex[:8])
        self.deployment = name_file.read_text().strip()

    def submission_id(self, req: RunRequest) -> str:
        return f"kraft-{self.deployment}-{req.job_id}-{req.attempt}"

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        # one Ray job holds the whole gang: it is submitted whole or not at all (`only` is
        # never a part of it: a Ray attempt has no ranks that began alone)
        bundles = ",".join(f"{self.node_names.get(r.node, r.node)}:{len(r.gpus)}"
                           for r in req.ranks)
        home = None
        if self.isolation is not None and req.identity is not None:
            # Ray runs every job as the account that runs Ray: Kraft gives it its tenant's
            # work folder (cwd and HOME) and no secrets, not an account (docs/security.md)
            home = work_dir(self.isolation.work_root, req.identity, None)
        envs = [job_env(launcher_env(req, rank, "127.0.0.1"), home, None) if home else
                launcher_env(req, rank, "127.0.0.1") for rank in range(len(req.ranks))]
        # MASTER_ADDR: Ray places the ranks; a launcher inside the job should take rank 0's
        # address from Ray. 127.0.0.1 is right for the single-machine test cluster only.
        entrypoint = shlex.join([self.python, "-m", "kraft.exec.ray_gang", "--bundles",
                                 bundles, "--env", json.dumps(envs),
                                 *(["--cwd", str(home)] if home else []), "--", *req.command])
        self.client.submit_job(entrypoint=entrypoint, submission_id=self.submission_id(req),
                               entrypoint_num_cpus=0, entrypoint_num_gpus=0)
        return list(range(len(req.ranks)))

    def _copy_logs(self, req: RunRequest, force: bool = False) -> None:
        sid = self.submission_id(req)
        now = time.monotonic()
        if force or now - self.logged_at.get(sid, 0.0) >= LOG_EVERY_S:
            self.logged_at[sid] = now
            self.log_path(req.job_id, req.attempt).write_text(self.client.get_job_logs(sid))

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        try:
            info = self.client.get_job_info(self.submission_id(req))
        except RuntimeError:  # Ray does not know it: lost (the head was restarted, say)
            info = None
        return self._judge(req, info)

    def status_many(self, runs: list[tuple[RunRequest, list[int]]]) -> list[RunStatus]:
        """Every run's status from one job listing of the Jobs API."""
        if not runs:
            return []
        known = {info.submission_id: info for info in self.client.list_jobs()}
        return [self._judge(req, known.get(self.submission_id(req))) for req, _ in runs]

    def _judge(self, req: RunRequest, info) -> RunStatus:
        if info is None:  # Ray does not know it: lost (the head was restarted, say)
            return RunStatus(False, None, lost=True)
        state = _name(info.status)
        self._copy_logs(req, force=state not in LIVE)
        if state in LIVE:
            return RunStatus(True, alive=True)
        if state == "SUCCEEDED":
            return RunStatus(False, 0)
        code = getattr(info, "driver_exit_code", None)
        return RunStatus(False, code if code not in (None, 0) else 1)

    def nodes_down(self) -> dict[str, str]:
        """Kraft's nodes whose Ray node is dead (by the node's resource name), from the
        state API: one request. A node Ray no longer lists at all is not judged here."""
        import httpx

        rows = httpx.get(f"{self.address}/api/v0/nodes", params={"detail": 1, "limit": 10000},
                         timeout=10).json()["data"]["result"]["result"]
        kraft_of = {v: k for k, v in self.node_names.items()}
        alive = {r for row in rows if row.get("state") == "ALIVE"
                 for r in row.get("resources_total") or {}}
        out = {}
        for row in rows:
            if row.get("state") != "DEAD":
                continue
            for resource in row.get("resources_total") or {}:
                if resource in kraft_of and resource not in alive:  # not restarted since
                    out[kraft_of[resource]] = "ray reports it dead" + (
                        f": {row['state_message']}" if row.get("state_message") else "")
        return out

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        # Returns at once: Ray stops the driver (SIGTERM, then SIGKILL after 3 s) and removes
        # its placement group; a job Kraft starts meanwhile on those GPUs waits in Ray for them.
        # Once only (the loop repeats a stop each second until the attempt is gone): a second
        # stop_job while the driver cleans up could kill it before it has freed the GPUs.
        sid = self.submission_id(req)
        if sid not in self.stopped:
            self.stopped.add(sid)
            self.client.stop_job(sid)

    def kill(self, req: RunRequest, handles: list[int]) -> None:
        self.client.stop_job(self.submission_id(req))  # Ray SIGKILLs a driver 3 s after

    def started(self, req: RunRequest, rank: int) -> bool:
        try:
            self.client.get_job_status(self.submission_id(req))
            return True
        except RuntimeError:
            return False

    def find(self, req: RunRequest) -> list[int | None]:
        try:
            state = _name(self.client.get_job_status(self.submission_id(req)))
        except RuntimeError:
            state = None
        return [r if state in LIVE else None for r in range(len(req.ranks))]

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        prefix = f"kraft-{self.deployment}-"
        out = []
        for info in self.client.list_jobs():
            sid = info.submission_id or ""
            parts = sid.removeprefix(prefix).split("-")
            if not sid.startswith(prefix) or len(parts) != 2 or _name(info.status) not in LIVE:
                continue
            job_id, attempt = map(int, parts)
            if current.get(job_id) != attempt:
                out.append((RunRequest(job_id, attempt, (), (Rank("", ()),)), [0]))
        return out


def _name(status) -> str:
    """A Ray JobStatus as its bare name ("RUNNING"), whatever the enum's str() looks like."""
    return str(status).rsplit(".", 1)[-1]
