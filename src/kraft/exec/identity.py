"""Who a job runs as, what it sees, and what it inherits (docs/security.md).

- Accounts: each tenant's jobs run under an unprivileged Unix account of its own, named in the
  tenant spec (`user`, `group`) or, when the service runs as root, created on first use as
  `kraft-<tenant>` (`useradd --system`, no login shell, no home).
- Work directory: `<work root>/<tenant>`, owned by that account, mode 0700: the job's cwd and
  HOME. A private temporary directory per attempt.
- Environment: an allow-list, never the service's own settings or secrets.
- Sandbox (bubblewrap, where installed): a new root holding only the system, the Python that
  runs Kraft, the tenant's work directory and allowed paths, a private /tmp and /proc (a PID
  namespace: the job sees its own processes only), and of the devices only the basic ones and
  the GPUs it was given.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# What a job inherits from the service's environment; everything else is left out.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# The system a sandboxed job sees, read-only (a merged-/usr system links /bin etc. into /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")


class IsolationError(RuntimeError):
    """The job cannot be given the isolation it needs; the message says why."""


@dataclass(frozen=True)
class Identity:
    """The tenant a job belongs to and how its operator mapped it to an account."""

    tenant: str
    user: str | None = None  # None: `kraft-<tenant>`, created when the service is root
    group: str | None = None  # None: the user's primary group
    paths: tuple[str, ...] = ()  # host paths the tenant may use (datasets), bound read-write
    slurm_account: str | None = None  # Slurm's fair-share account for its jobs


@dataclass(frozen=True)
class Account:
    user: str
    uid: int
    gid: int


def default_user(tenant: str) -> str:
    """`kraft-<tenant>` where that is a valid account name (32 characters), else a hash."""
    name = f"kraft-{tenant.lower()}"
    if re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name) and len(name) <= 32:
        return name
    return "kraft-t" + hashlib.sha256(tenant.encode()).hexdigest()[:12]


def resolve_account(identity: Identity, create: bool) -> Account:
    """The account `identity` runs as; created if missing, allowed and root."""
    user = identity.user or default_user(identity.tenant)
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = None
    if pw is None:
        if not (create and identity.user is None and os.geteuid() == 0):
            raise IsolationError(f"tenant {identity.tenant!r}: no account {user!r} on this "
                                 f"host (create it, or map the tenant to one: "
                                 f"kraft admin tenant create --user)") from None
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                               "--shell", "/usr/sbin/nologin", "--comment",
                               f"Kraft tenant {identity.tenant}"[:60], user],
                              capture_output=True, text=True)
        if made.returncode not in (0, 9):  # 9: created meanwhile by another process
            raise IsolationError(f"useradd {user}: {made.stderr.strip()}")
        pw = pwd.getpwnam(user)
    if pw.pw_uid == 0:
        raise IsolationError(f"tenant {identity.tenant!r}: account {user!r} is root")
    gid = pw.pw_gid
    if identity.group:
        try:
            gid = grp.getgrnam(identity.group).gr_gid
        except KeyError:
            raise IsolationError(f"tenant {identity.tenant!r}: no group "
                                 f"{identity.group!r}") from None
    return Account(user, pw.pw_uid, gid)


def work_dir(root: Path, identity: Identity, account: Account | None) -> Path:
    """The tenant's own directory (cwd and HOME of its jobs), 0700, owned by its account."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)  # others may pass through to their own directory, not list it
    d = root / identity.tenant
    d.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        st = d.stat()
        if (st.st_uid, st.st_gid) != (account.uid, account.gid):
            os.chown(d, account.uid, account.gid)
    d.chmod(0o700)
    return d


def reachable(path: Path, account: Account) -> str | None:
    """Why `account` cannot reach `path` (a parent it may not enter), or None."""
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid == account.uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == account.gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return f"{parent} (mode {st.st_mode & 0o777:o})"
    return None


def job_env(base: dict[str, str], home: Path, account: Account | None) -> dict[str, str]:
    """The environment a job starts from: the allow-list, its HOME, its account's names; the
    launcher's and the job's own variables go on top (kraft.exec.base.launcher_env)."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.setdefault("PATH", SAFE_PATH)
    env["HOME"] = str(home)
    if account is not None:
        env["USER"] = env["LOGNAME"] = account.user
    return {**env, **base}


def bwrap() -> str | None:
    return shutil.which("bwrap")


def _with_parents(path: Path, made: set[str], argv: list[str]) -> None:
    """bubblewrap makes a bound path's missing parents with modes of its own (0700 for
    /root): make each one 0755 first, so the job's account can pass through."""
    for parent in reversed(path.parents):
        p = str(parent)
        if p != "/" and p not in made:
            made.add(p)
            argv += ["--perms", "0755", "--dir", p]


def python_dirs() -> list[Path]:
    """What the Python running Kraft needs: its prefixes and the kraft package's own folder
    (an editable install lives outside site-packages)."""
    import kraft

    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
            Path(kraft.__file__).resolve().parent.parent,
            Path(sys.executable).resolve().parent.parent}
    return sorted(d for d in dirs if not any(d != o and o in d.parents for o in dirs))


def sandbox_argv(home: Path, paths: tuple[str, ...] | list[str], devices: list[str]
                 ) -> list[str]:
    """bubblewrap's arguments (run as root; the account is set inside, by setpriv)."""
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--hostname", "job"]
    made: set[str] = set()
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            argv += ["--ro-bind", d, d]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for dev in devices:
        if Path(dev).exists():
            if not dev.startswith("/dev/"):
                _with_parents(Path(dev), made, argv)
            argv += ["--dev-bind", dev, dev]
    for d in python_dirs():
        if not any(str(d) == s or str(d).startswith(s + "/") for s in SYSTEM_DIRS):
            _with_parents(d, made, argv)
            argv += ["--ro-bind", str(d), str(d)]
    for d in (*paths, str(home)):
        _with_parents(Path(d), made, argv)
        argv += ["--bind", d, d]
    argv += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(home)]
    return argv


@dataclass(frozen=True)
class Isolation:
    """What a service gives its jobs, decided once at start (`kraft serve`)."""

    accounts: bool  # each tenant's jobs as its own account (the service runs as root)
    sandbox: bool  # bubblewrap: the job's own view of files, processes and devices
    work_root: Path  # tenants' work directories: <work_root>/<tenant>

    @classmethod
    def detect(cls, work_root: Path, single_user: bool = False,
               sandbox: bool = True) -> Isolation:
        root = os.geteuid() == 0
        return cls(accounts=root and not single_user, sandbox=sandbox and root and bool(bwrap()),
                   work_root=work_root)

    def describe(self) -> str:
        who = ("each tenant's jobs run as its own account" if self.accounts else
               "jobs run as the service's own account (single user)")
        box = ("sandboxed by bubblewrap" if self.sandbox else
               "not sandboxed (bubblewrap not installed or not root)")
        return f"{who}, {box}; work directories in {self.work_root}"
