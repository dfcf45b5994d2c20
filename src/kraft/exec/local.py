"""The local executor: each rank of a job is a process tree on this machine, under a
supervisor (`kraft.exec.runner`) that runs as the service and starts the command as the
tenant's account, in its work directory, sandboxed where bubblewrap is installed
(kraft.exec.identity), with CUDA_VISIBLE_DEVICES set to its logical GPUs and the variables a
distributed launcher expects (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK). Logs go to files
the job can only append to; exit statuses to files too, so that a restarted control plane
finds out how jobs ended while it was down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kraft.exec.base import ExitFiles, Rank, RunRequest, RunStatus, launcher_env
from kraft.exec.identity import (
    Account,
    Isolation,
    IsolationError,
    job_env,
    reachable,
    resolve_account,
    work_dir,
)
from kraft.exec.runner import descendants


class LocalExecutor(ExitFiles):
    name = "local"
    capabilities = frozenset({"logs", "adopt", "multi-node"})

    def __init__(self, work_dir: Path, isolation: Isolation | None = None,
                 gpu_devices: str | None = None, shared_devices: tuple[str, ...] = (),
                 node_names: dict[str, str] | None = None):
        super().__init__(work_dir)
        self.isolation = isolation
        self.gpu_devices = gpu_devices  # "/dev/nvidia{gpu}": the device file of each GPU
        self.shared_devices = shared_devices
        self.node_names = node_names or {}  # Kraft node name -> the name in gpu_devices
        self.accounts: dict[tuple, Account] = {}

    def _identity_args(self, req: RunRequest) -> tuple[list[str], Path, Account | None]:
        """The runner's options that make it the tenant's process, its home, its account."""
        iso, ident = self.isolation, req.identity
        if iso is None or ident is None:  # no tenant: the service's account, here
            return [], Path.cwd(), None
        account = None
        if iso.accounts:
            key = (ident.tenant, ident.user, ident.group)
            if key not in self.accounts:
                self.accounts[key] = resolve_account(ident, create=True)
            account = self.accounts[key]
        home = work_dir(iso.work_root, ident, account)
        if account is not None and not iso.sandbox and (why := reachable(home, account)):
            raise IsolationError(f"account {account.user} cannot reach its work directory "
                                 f"{home}: {why} is closed to it (move --work-dir, or install "
                                 f"bubblewrap)")
        args = ["--home", str(home)]
        if account is not None:
            args += ["--uid", str(account.uid), "--gid", str(account.gid)]
        if iso.sandbox:
            args += ["--sandbox", "1", "--paths", json.dumps(list(ident.paths))]
        return args, home, account

    def _devices(self, rank: Rank) -> list[str]:
        if not self.gpu_devices:
            return list(self.shared_devices)
        node = self.node_names.get(rank.node, rank.node)
        return [*(self.gpu_devices.format(node=node, gpu=g) for g in rank.gpus),
                *self.shared_devices]

    def start(self, req: RunRequest, only: list[int] | None = None) -> list[int]:
        args, home, account = self._identity_args(req)
        pids: list[int] = []
        procs: list[subprocess.Popen] = []
        try:
            for rank in range(len(req.ranks)) if only is None else only:
                r = req.ranks[rank]
                env = job_env({**launcher_env(req, rank, "127.0.0.1"),
                               "CUDA_VISIBLE_DEVICES": ",".join(map(str, r.gpus))},
                              home, account)
                extra = [*args, "--devices", json.dumps(self._devices(r))] if (
                    "--sandbox" in args) else args
                log = self.open_log(req.job_id, req.attempt)
                try:
                    proc = subprocess.Popen(self.runner_argv(req, rank, sys.executable,
                                                             tuple(extra)),
                                            stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                finally:
                    os.close(log)
                procs.append(proc)
                pids.append(proc.pid)
        except Exception:  # all or nothing: stop the ranks already started
            for proc in procs:
                _kill_new(proc, req.grace_s)
            raise
        return pids

    def status(self, req: RunRequest, handles: list[int]) -> RunStatus:
        status, stop = self.gang_status(req, [h is not None and self._alive(h, req)
                                              for h in handles])
        if stop:
            self.stop(req, handles)
        return status

    def stop(self, req: RunRequest, handles: list[int]) -> None:
        for pid in handles:  # the runner signals the job's processes, then SIGKILLs them
            if pid is not None and self._alive(pid, req):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def kill(self, req: RunRequest, handles: list[int]) -> None:
        for pid in handles:
            if pid is not None and self._alive(pid, req):
                for p in [*descendants(pid), pid]:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def find(self, req: RunRequest) -> list[int | None]:
        found = _runners(self.work_dir).get((req.job_id, req.attempt), {})
        return [found.get(rank) for rank in range(len(req.ranks))]

    def orphans(self, current: dict[int, int]) -> list[tuple[RunRequest, list[int]]]:
        out = []
        for (job_id, attempt), by_rank in _runners(self.work_dir).items():
            if current.get(job_id) != attempt:
                n = max(by_rank) + 1
                req = RunRequest(job_id, attempt, (), tuple(Rank("", ()) for _ in range(n)))
                out.append((req, [by_rank.get(r) for r in range(n)]))
        return out

    def _alive(self, pid: int, req: RunRequest) -> bool:
        # the runner's argv up to its exit file: job id, attempt and this work folder, so
        # another Kraft on the same machine with the same job id is never taken for ours
        want = self.runner_argv(req, 0, "")[1:9]
        want[-1] = str(self.exit_file(req.job_id, req.attempt, 0))[:-1]  # any rank
        return _alive(pid, [w.encode() for w in want])


def _kill_new(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a runner just started, and all it started. Once it is past exec a SIGTERM reaches
    it (before exec it would be lost): it then dies at once if it has started nothing, or
    stops its job as for a cancel; SIGKILL to its tree if it is still there after the grace."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if b"kraft.exec.runner" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                break
        except OSError:
            break
        time.sleep(0.005)
    proc.terminate()
    try:
        proc.wait(timeout=grace_s + 2)
    except subprocess.TimeoutExpired:
        for p in [*descendants(proc.pid), proc.pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _runners(work_dir: Path) -> dict[tuple[int, int], dict[int, int]]:
    """Every live runner of this work folder, by (job, attempt) and rank: one pass over /proc."""
    prefix = str(work_dir / "exit") + "/"
    out: dict[tuple[int, int], dict[int, int]] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[1:3] != [b"-m", b"kraft.exec.runner"] or len(cmd) < 9:
            continue
        exit_file = cmd[8].decode(errors="replace")
        if not exit_file.startswith(prefix) or not _alive(int(p), cmd[1:9]):
            continue
        job, attempt, rank = map(int, exit_file.removeprefix(prefix).split("."))
        out.setdefault((job, attempt), {})[rank] = int(p)
    return out


def _alive(pid: int, want: list[bytes]) -> bool:
    """True if `pid` runs `python` + `want` (not a recycled pid), and is not a zombie; the last
    item of `want` is a prefix (the exit file without its rank)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own child
        except ChildProcessError:
            pass
        return False
    if not raw and int(ppid) == os.getpid():
        # Our child just past exec: the kernel closes the exec pipe (and Popen returns)
        # before it sets the new argv, so for a moment the command line reads empty.
        return True
    cmd = raw.split(b"\0")
    args = cmd[1:1 + len(want)]
    return len(args) == len(want) and args[:-1] == want[:-1] and args[-1].startswith(want[-1])


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP `port` on this host (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(int(f[9]))
    return inodes


def owns_port(runner_pid: int, port: int) -> bool | None:
    """Whether the process listening on `port` belongs to the job under `runner_pid` (the
    proof the gateway asks of a replica before it sends it a request): True, False (another
    process holds the port: a squatter), or None (nothing listens yet)."""
    inodes = listening_inodes(port)
    if not inodes:
        return None
    want = {f"socket:[{i}]" for i in inodes}
    for pid in descendants(runner_pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                    return True
            except OSError:
                continue
    return False
