"""The Slurm executor: Kraft decides, Slurm executes.

Each attempt of a gang is one Slurm job, `kraft-<job>-<attempt>`, so that Slurm starts and
stops it whole: a heterogeneous job with one component per rank, pinned where Kraft placed it
(`--nodelist NODE --gres gpu:K`), whose batch script starts each rank's runner as a step
(`srun --het-group=K`). A restarted control plane finds its jobs again by name with `squeue`
instead of submitting them twice. Slurm picks the device indices on each node and sets
CUDA_VISIBLE_DEVICES; Kraft only counts. Logs go to the job's log file (`--output`,
appended); exit statuses come from `kraft.exec.runner` around the command, so no accounting
database (slurmdbd) is needed. Cancel, time limit and preemption send every step SIGTERM
(`scancel --signal=TERM`), and each rank's runner stops its processes with Kraft's grace
period, as on the local executor. A job's environment is Kraft's allow-list, handed to sbatch
through a pipe (`--export=NIL --export-file`), never the service's own; the job carries its
tenant's Slurm account (`--account`) where the tenant names one. The loop learns every job's
state from one `squeue` listing per step (`status_many`).

Slurm's main scheduler leaves heterogeneous jobs to its backfill scheduler, so how soon one
starts is `bf_interval` (30 s by default; the test cluster sets 1 s): set it low on a site
whose gangs Kraft places.

The control plane must share a file system with the Slurm nodes for logs and exit files (as
with NFS home directories on most clusters).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from kraft.exec import runner
from kraft.exec.base import ExitFiles, Rank, RunRequest, RunStatus, launcher_env
from kraft.exec.identity import (
    SAFE_PATH,
    Account,
    IsolationError,
    job_env,
    reachable,
    resolve_account,
    work_dir,
)

LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
        "RESIZING", "SIGNALING", "STAGE_OUT"}


class SlurmError(RuntimeError):
    pass


def _run(argv: list[str], env_fd: int | None = None) -> str:
    """Run a Slurm command with only what it needs of this environment (jobs get theirs
    through --export-file, never this process's settings)."""
    env = {"PATH": os.environ.get("PATH", SAFE_PATH),
           **{k: v for k, v in os.environ.items() if k.startswith("SLURM_CONF")}}
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env,
                             pass_fds=() if env_fd is None else (env_fd,))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{argv[0]}: {e}") from e
    if out.returncode != 0:
        said = out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}"
        raise SlurmError(f"{shlex.join(argv)}: {said}")
    return out.stdout


class SlurmExecutor(ExitFiles):
    name = "slurm"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def __init__(self, work_dir, partition: str | None = None,
                 node_names: dict[str, str] | None = None, isolation=None):
        super().__init__(work_dir)
        self.isolation = isolation
        self.partition = partition
        self.node_names = node_names or {}  # Kraft node name -> Slurm node name
        self.accounts: dict[tuple, Account] = {}
        self.entry: tuple[str, ...] = ("-m", "kraft.exec.runner")
        self.python = sys.executable
        if isolation is not None and isolation.accounts:
            # Each job's log and exit files in a folder of its own, owned by its tenant's
            # account (Slurm writes the log, and the runner the exit files, as that account):
            # runs/slurm/<job>/. The folders above may be passed through, not listed.
            self.work_dir.chmod(0o711)
            (self.work_dir / "slurm").mkdir(mode=0o711, exist_ok=True)
            (self.work_dir / "slurm").chmod(0o711)
            # The runner then runs as the tenant's account, which may not read the Python
            # Kraft runs from (a venv under /root, say): the runner is one file of the
            # standard library only, copied where that account can read it, and run by the
            # system's python3.
            script = self.work_dir / "slurm" / "kraft-runner.py"
            script.write_bytes(Path(runner.__file__).read_bytes())
            script.chmod(0o644)
            self.entry = (str(script),)
            self.python = shutil.which("python3", path=SAFE_PATH) or sys.executable

    def _per_job(self) -> bool:
        return self.isolation is not None and self.isolation.accounts

    def log_path(self, job_id: int, attempt: int) -> Path:
        if not self._per_job():
            return super().log_path(job_id, attempt)
        return self.work_dir / "slurm" / str(job_id) / f"{attempt}.log"

    def exit_file(self, job_id: int, attempt: int, rank: int) -> Path:
        if not self._per_job():
            return super().exit_file(job_id, attempt, rank)
        return self.work_dir / "slurm" / str(job_id) / f"{attempt}.{rank}"

    def _identity_args(self, req: RunRequest) -> tuple[list[str], Path]:
        """sbatch's options that run the job as its tenant's account, in its work folder."""
        ident = req.identity
        if not self._per_job() or ident is None:
            return [], self.work_dir
        key = (ident.tenant, ident.user, ident.group)
        if key not in self.accounts:
            self.accounts[key] = resolve_account(ident, create=True)
        account = self.accounts[key]
        home = work_dir(self.isolation.work_root, ident, account)
        job_dir = self.work_dir / "slurm" / str(req.job_id)
        job_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(job_dir, account.uid, account.gid)
        for d in (home, job_dir):  # Slurm runs the job as the account: no sandbox to bind
            if why := reachable(d, account):
                raise IsolationError(f"account {account.user} cannot reach {d}: {why} is "
                                     f"closed to it (put --data-dir/--work-dir where job "
                                     f"accounts may pass, e.g. /var/lib/kraft)")
        args = [f"--uid={account.uid}", f"--gid={account.gid}", f"--chdir={home}"]
        if ident.slurm_account:
            args.append(f"--account={ident.slurm_account}")
        return args, home

    def _node(self, kraft_node: str) -> str:
        return self.node_names.get(kraft_node, kraft_node)

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        """One Slurm job per attempt, so that Slurm starts and stops the gang whole: a
        heterogeneous job with one component per rank (its node and GPU count), whose batch
        script launches each rank's runner as a step (`srun --het-group=K`) and waits for all.
        Every rank's handle is the job's id."""
        n = len(req.ranks)
        if only is not None and sorted(only) != list(range(n)):
            raise SlurmError(f"job {req.job_id} attempt {req.attempt}: a Slurm gang starts "
                             f"whole, not ranks {only} of {n}")
        log = self.log_path(req.job_id, req.attempt)
        master = _node_addr(self._node(req.ranks[0].node))
        who, home = self._identity_args(req)
        script = self._script(req)
        # the environment through a pipe: an allow-list, no value on a command line; each
        # step's own RANK and KRAFT_NODE are set on its srun line. As a path (/dev/fd/N):
        # sbatch opens it again for each component of a heterogeneous job, which a bare fd
        # number fails
        env = job_env(launcher_env(req, 0, master), home, None)
        read, write = os.pipe()
        os.write(write, b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
        os.close(write)
        partition = [f"--partition={self.partition}"] if self.partition else []
        components: list[str] = []
        for k, r in enumerate(req.ranks):
            components += [*([":"] if k else []), f"--nodelist={self._node(r.node)}",
                           "--nodes=1", "--ntasks=1", f"--gres=gpu:{len(r.gpus)}", *partition]
        argv = ["sbatch", "--parsable", f"--job-name=kraft-{req.job_id}-{req.attempt}",
                f"--output={log}", "--open-mode=append", "--export=NIL",
                f"--export-file=/dev/fd/{read}", *who, *components, str(script)]
        try:
            job = int(_run(argv, read).strip().split(";")[0].split("+")[0])
        finally:
            os.close(read)
        return [job] * n

    def _script(self, req: RunRequest) -> Path:
        """The batch script: each rank's runner as a step on its component, all at once."""
        lines = ["#!/bin/sh", "# Kraft: one step per rank; the job ends when every rank has"]
        for k, r in enumerate(req.ranks):
            argv = self.runner_argv(req, k, self.python, entry=self.entry)
            het = [f"--het-group={k}"] if len(req.ranks) > 1 else []
            # env(1) on the node: srun's --export=ALL,RANK=K kept the batch's RANK=0
            lines.append(shlex.join(["srun", *het, "--ntasks=1", "env", f"RANK={k}",
                                     f"KRAFT_NODE={r.node}", *argv]) + " &")
        lines.append("wait")
        # in the service's own folder, never the tenant's (runs/slurm/<job>, which its job
        # could fill with links for the service to write through); sbatch copies it
        folder = self.work_dir / "slurm-scripts"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{req.job_id}.{req.attempt}.sh"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
        return path

    def _states(self, ids: list[int | None]) -> dict[str, str]:
        """Slurm's state of each job (`123`) or component of a heterogeneous job (`123+1`)."""
        ids = sorted({i for i in ids if i is not None})
        if not ids:
            return {}
        out = _run(["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(map(str, ids))])
        return dict(line.split() for line in out.splitlines())

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        try:
            states = self._states(handles)
        except SlurmError as e:
            if "Invalid job id" not in str(e):  # forgotten by Slurm: judge by exit files
                raise
            states = {}
        return self._judge(req, handles, states)

    def status_many(self, runs: list[tuple[RunRequest, list[int]]]) -> list[RunStatus]:
        """Every run's status from one squeue listing (every job Slurm still knows; one it
        has forgotten is judged by its exit files, as in `status`)."""
        if not runs:
            return []
        out = _run(["squeue", "-h", "-t", "all", "-o", "%i %T"])
        states = dict(line.split() for line in out.splitlines())
        return [self._judge(req, handles, states) for req, handles in runs]

    def _judge(self, req: RunRequest, handles: list[int], states: dict[int, str]
               ) -> RunStatus:
        n = len(handles)
        status, stop = self.gang_status(req, [
            h is not None and states.get(f"{h}+{k}" if n > 1 else str(h)) in LIVE
            for k, h in enumerate(handles)])
        if stop:
            self.stop(req, handles)
        return status

    @staticmethod
    def _scancel(*args: str) -> None:
        """scancel, where a job that ended meanwhile is no error. A signal that did not go
        through (scancel fails, without a word, when the job ends as it answers) is not one
        either: the loop sends the stop again each second until the attempt is gone, and
        SIGKILLs it past its grace period."""
        try:
            _run(["scancel", *args])
        except SlurmError as e:
            signal_only = any(a.startswith("--signal") for a in args)
            if not (signal_only or "Invalid job id" in str(e) or "already completing" in str(e)):
                raise

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        """SIGTERM to each rank's runner (a step of the job), which stops the rank's
        processes and SIGKILLs them after the grace period; a job still pending is
        cancelled."""
        states = self._states(handles)
        jobs = {i.split("+")[0]: st for i, st in states.items()}
        running = sorted(j for j, st in jobs.items() if st == "RUNNING")
        waiting = sorted(j for j, st in jobs.items() if st in LIVE and st != "RUNNING")
        if running:
            self._scancel("--signal=TERM", *running)
        if waiting:  # not started: nothing to give a grace to
            self._scancel(*waiting)

    def kill(self, req: RunRequest, handles: list[int]) -> None:
        ids = sorted({str(h) for h in handles if h is not None})
        if ids:
            self._scancel("--signal=KILL", "--full", *ids)
            self._scancel(*ids)

    def nodes_down(self) -> dict[str, str]:
        """Kraft's nodes that Slurm has down, failed or not responding, with Slurm's
        reason: one sinfo."""
        kraft_of = {v: k for k, v in self.node_names.items()}
        out = {}
        for line in _run(["sinfo", "-h", "-N", "-o", "%N|%T|%E"]).splitlines():
            node, state, reason = (line.split("|", 2) + ["", ""])[:3]
            bare = state.rstrip("*~#!%$@^-").lower()
            if state.endswith("*") or bare in ("down", "fail", "failing"):
                why = "not responding" if state.endswith("*") else bare
                reason = reason.strip() if reason.strip() not in ("", "none") else ""
                out[kraft_of.get(node, node)] = f"slurm reports it {why}" + (
                    f": {reason}" if reason else "")
        return out

    def _kraft_jobs(self) -> dict[tuple[int, int], dict[int, int]]:
        """Every live Kraft rank in Slurm, by (job, attempt) and rank: one squeue. A job is
        `kraft-<job>-<attempt>`, its ranks the components `<id>+<rank>`; a rank of an older
        Kraft was a job of its own, `kraft-<job>-<attempt>-<rank>`."""
        out: dict[tuple[int, int], dict[int, int]] = {}
        for line in _run(["squeue", "-h", "-o", "%i %j"]).splitlines():
            slurm_id, name = line.split(maxsplit=1)
            leader, _, component = slurm_id.partition("+")
            parts = name.split("-")
            if parts[0] != "kraft" or not all(p.isdigit() for p in parts[1:]):
                continue
            if len(parts) == 3:
                job, attempt = map(int, parts[1:])
                out.setdefault((job, attempt), {})[int(component or 0)] = int(leader)
            elif len(parts) == 4:
                job, attempt, rank = map(int, parts[1:])
                out.setdefault((job, attempt), {})[rank] = int(leader)
        return out

    def find(self, req: RunRequest) -> list[int | None]:
        found = self._kraft_jobs().get((req.job_id, req.attempt), {})
        return [found.get(r) for r in range(len(req.ranks))]

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        out = []
        for (job_id, attempt), by_rank in self._kraft_jobs().items():
            if current.get(job_id) != attempt:
                n = max(by_rank) + 1
                req = RunRequest(job_id, attempt, (), tuple(Rank("", ()) for _ in range(n)))
                out.append((req, [by_rank.get(r) for r in range(n)]))
        return out


@cache
def _node_addr(node: str) -> str:
    """The rank-0 node's address for MASTER_ADDR (NodeAddr in slurm.conf)."""
    out = _run(["scontrol", "show", "node", "-o", node])
    for field in out.split():
        if field.startswith("NodeAddr="):
            return field.removeprefix("NodeAddr=")
    return node
