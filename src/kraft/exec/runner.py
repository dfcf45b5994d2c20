"""The supervisor of one rank: starts the job's command as its tenant's account, stops all of
it on request, then writes its exit status to a file atomically.

    python -m kraft.exec.runner --job-id 7 --attempt 1 --exit-file F [options] -- cmd args...

It runs as the service's account, so a job cannot signal it. It is a child subreaper
(PR_SET_CHILD_SUBREAPER): whatever the job forks, double-forks or detaches with setsid stays
below it, so "every process of the job" is its process tree. On SIGTERM (cancel, time limit,
preemption) it sends SIGTERM to every process of the job, waits `--grace-s`, then SIGKILLs
what is left; when the command ends by itself, stragglers it left behind are killed at once.
Only when the tree is empty does it write the exit file and exit: a control plane that sees
this process gone knows the job's GPUs are free.

It first writes `F.started`: after a crash, a rank with neither this file nor a live runner
never ran, and the recovery rule may start it without running anything twice. The job id in
this process's arguments lets a restarted control plane find it again.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                out.append(k)
                todo.append(k)
    return out


def _is_sandbox(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "bwrap"
    except OSError:
        return False


def signal_job(signum: int, done: set[int] | None = None) -> None:
    """Send `signum` to every process of the job not in `done` (and add them there). SIGTERM
    spares bubblewrap's own processes (they would tear the sandbox down without a grace
    period)."""
    for pid in descendants(os.getpid()):
        if done is not None and pid in done:
            continue
        if signum == signal.SIGTERM and _is_sandbox(pid):
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        if done is not None:
            done.add(pid)


def reap_all() -> None:
    """SIGKILL and reap until nothing is left below this process."""
    while True:
        left = descendants(os.getpid())
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.01)


def command(cmd: list[str], opts: dict) -> tuple[list[str], dict]:
    """The argv and Popen options that run `cmd` as the tenant's account, sandboxed or not."""
    uid, gid = opts.get("--uid"), opts.get("--gid")
    home = opts.get("--home")
    if opts.get("--sandbox") == "1":
        from kraft.exec.identity import sandbox_argv

        argv = [*sandbox_argv(Path(home), json.loads(opts.get("--paths", "[]")),
                              json.loads(opts.get("--devices", "[]"))), "--"]
        if uid is not None:
            argv += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return [*argv, *cmd], {}
    kw: dict = {"cwd": home} if home else {}
    if uid is not None:
        kw.update(user=int(uid), group=int(gid), extra_groups=[])
    return cmd, kw


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts = dict(zip(argv[:split:2], argv[1:split:2]))
    cmd = argv[split + 1:]
    exit_file = opts["--exit-file"]
    grace_s = float(opts.get("--grace-s", "10"))
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1)
    stop_at: list[float] = []
    signal.signal(signal.SIGTERM, lambda *_: stop_at or stop_at.append(time.monotonic()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(exit_file + ".started").write_text(str(os.getpid()))
    env = dict(os.environ)
    tmp = None
    if opts.get("--sandbox") != "1" and opts.get("--home"):  # a private TMPDIR per attempt
        tmp = Path(opts["--home"]) / ".tmp" / f"{opts['--job-id']}.{opts['--attempt']}"
        tmp.mkdir(parents=True, mode=0o700, exist_ok=True)
        if opts.get("--uid") is not None:
            os.chown(tmp.parent, int(opts["--uid"]), int(opts["--gid"]))
            os.chown(tmp, int(opts["--uid"]), int(opts["--gid"]))
        env["TMPDIR"] = str(tmp)
    args, kw = command(cmd, opts)
    try:
        child = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, umask=0o077,
                                 start_new_session=True, **kw)
    except OSError as e:
        print(f"kraft: cannot start {cmd[0]!r}: {e.strerror or e}", flush=True)
        code = 127
    else:
        termed: set[int] = set()
        while (code := child.poll()) is None:
            if stop_at:  # again each round: a process started after the stop gets it too
                signal_job(signal.SIGTERM, termed)
            if stop_at and time.monotonic() - stop_at[0] >= grace_s:
                signal_job(signal.SIGKILL)
            time.sleep(0.02)
        reap_all()  # what the job left behind, or what ignored SIGTERM
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    part = exit_file + ".tmp"
    with open(part, "w") as f:
        f.write(str(code))
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, exit_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
