"""One scheduling loop per database, however many `kraft serve` processes share it.

- SQLite: one `kraft serve` per database file. It holds an exclusive `flock` on
  `<file>.lock` for its whole life (the kernel drops it when the process dies, however it
  dies); a second instance is refused and told which process holds the file.
- PostgreSQL: any number of instances serve the API; the loop runs only in the one whose
  loop process holds a session-level advisory lock on the database. The others stand by,
  trying for it every half second. PostgreSQL releases the lock when the holder's session
  ends (its process killed: the socket closes at once), so a standby takes over, recovers
  and schedules. The holder checks its session each second and stops its loop when the
  session is gone (the database restarted, the network cut), since another may then hold
  the lock.

Left for the lease with fencing tokens (issue #17): a holder that is paused (SIGSTOP, a long
stall) keeps its session and so its lock; no standby takes over until it wakes or its
connection is cut.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

log = logging.getLogger("kraft.leader")
LOOP_LOCK = 0x6B72616674  # "kraft": the advisory lock's key, one per database
STANDBY_POLL_S = 0.5
CHECK_EVERY_S = 1.0


class InstanceLocked(RuntimeError):
    pass


def lock_sqlite(db_file: Path):
    """Hold `<db_file>.lock` for this process's life; InstanceLocked if another holds it.
    Returns the open file (keep it: closing it releases the lock)."""
    path = db_file.with_name(db_file.name + ".lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise InstanceLocked(
            f"{db_file} is in use by another kraft serve (pid {holder}): SQLite takes one "
            f"instance; stop that one, or run several on PostgreSQL (--db postgresql://…)"
        ) from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


class Leadership:
    """The loop's right to act on a PostgreSQL database: the advisory lock, on a connection
    of its own."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.conn = None
        self.checked_at = 0.0

    def wait(self, stop: threading.Event) -> bool:
        """Block until this process holds the lock (True) or `stop` is set (False)."""
        said = False
        while not stop.is_set():
            try:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                got = False
                try:
                    got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": LOOP_LOCK})
                finally:
                    if not got:  # refused, or the query failed: the connection goes back
                        conn.close()
                if got:
                    self.conn, self.checked_at = conn, time.monotonic()
                    log.warning("leader: this instance runs the scheduling loop (pid %s)",
                                os.getpid())
                    return True
            except Exception as e:  # the database is away: keep trying, as a standby would
                log.warning("leader: cannot reach the database (%s); trying again", e)
            if not said:
                log.warning("standby: another instance runs the scheduling loop; this one "
                            "serves the API and takes over when that one stops")
                said = True
            stop.wait(STANDBY_POLL_S)
        return False

    def held(self) -> bool:
        """Whether the lock is still ours: the session is checked at most each second."""
        if time.monotonic() - self.checked_at < CHECK_EVERY_S:
            return True
        try:
            self.conn.scalar(text("SELECT 1"))
        except Exception as e:
            log.error("leader: lost the database session (%s); stopping the loop", e)
            return False
        self.checked_at = time.monotonic()
        return True
