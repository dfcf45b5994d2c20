"""One scheduling loop per database, however many `kraft serve` processes share it.

- SQLite: one `kraft serve` per database file. It holds an exclusive `flock` on
  `<file>.lock` for its whole life (the kernel drops it when the process dies, however it
  dies); a second instance is refused and told which process holds the file.
- PostgreSQL: any number of instances serve the API; the loop runs only in the one whose
  loop process holds the lease, a row in `leases` with an expiry on the database's clock
  and an epoch that grows with each new holder (its fencing token). The holder renews it
  every half second from a thread of its own; the others stand by and take it once it has
  expired (its holder killed, paused, or cut off from the database).

A holder acts only while its lease is good, judged two ways:
- every transaction the loop commits first reads the lease row `FOR SHARE` and checks that
  it is still this epoch's and unexpired: a standby's takeover (an UPDATE of that row) must
  wait for the commit, so no write of an old leader lands after a new one took over;
- every engine action (start, stop, kill) first checks the lease on this process's own clock:
  it ends LEASE_S - MARGIN_S after the renewal was *sent*, before the database's expiry, so
  an old leader stops acting before a standby can start. Left: the microseconds between that
  check and the engine call.

A paused leader (SIGSTOP, a stall) wakes with its lease gone: its next check fails and it
applies nothing, and its loop process exits so that `kraft serve` starts it again as a
standby. Its sessions are cut by the database if it paused inside a transaction
(idle_in_transaction_session_timeout), so it cannot hold the lease row's lock either.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

log = logging.getLogger("kraft.leader")
LEASE_S = 4.0  # a silent holder keeps the loop this long: the floor of a failover
RENEW_EVERY_S = 0.5
MARGIN_S = 0.5  # the holder gives up this much before the database's expiry (clock drift)
STANDBY_POLL_S = 0.5
IDLE_IN_TRANSACTION_MS = 10_000  # a loop paused mid-transaction loses its session then
LOST_EXIT = 3  # the loop process's exit status when it lost the lease

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


class LeaseLost(BaseException):
    """The loop may no longer act. A BaseException, as SystemExit is: no handler of engine
    or database errors in the loop may take it for one and carry on."""


def fence_connections(engine: Engine) -> None:
    """The loop's sessions are cut by the database if they sit idle inside a transaction
    (the process paused): a paused old leader cannot hold a row lock a new one waits on."""

    @event.listens_for(engine, "connect")
    def _timeout(conn, _record):
        with conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        conn.commit()  # the SET began a transaction: a new connection must come idle


class Lease:
    """The loop's right to act on a PostgreSQL database."""

    NAME = "loop"

    def __init__(self, engine: Engine):
        self.engine = engine
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.epoch: int | None = None
        self.good_until = -1.0  # on time.monotonic()
        self.lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def _run(self, sql: str, **params):
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(text(sql), {"name": self.NAME, "ttl": LEASE_S, **params})

    def wait(self, stop: threading.Event) -> bool:
        """Block until this process holds the lease (True) or `stop` is set (False)."""
        said = False
        while not stop.is_set():
            sent = time.monotonic()
            try:  # one statement: the first holder inserts, later ones take an expired lease
                self.epoch = self._run(
                    "INSERT INTO leases (name, epoch, holder, until) VALUES (:name, 1, "
                    ":holder, clock_timestamp() + make_interval(secs => :ttl)) "
                    "ON CONFLICT (name) DO UPDATE SET epoch = leases.epoch + 1, "
                    "holder = :holder, until = EXCLUDED.until "
                    "WHERE leases.until < clock_timestamp() RETURNING epoch",
                    holder=self.holder).scalar()
            except Exception as e:  # the database is away: keep trying, as a standby would
                log.warning("leader: cannot reach the database (%s); trying again", e)
                self.epoch = None
            if self.epoch is not None:
                self.good_until = sent + LEASE_S - MARGIN_S
                log.info("leader: this instance runs the scheduling loop (pid %s, lease "
                 "epoch %s)", os.getpid(), self.epoch)
                self._renewer = threading.Thread(target=self._renew, args=(stop,),
                                                 name="kraft-lease", daemon=True)
                self._renewer.start()
                return True
            if not said:
                log.warning("standby: another instance runs the scheduling loop; this one "
                            "serves the API and takes over when that one stops")
                said = True
            stop.wait(STANDBY_POLL_S)
        return False

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(RENEW_EVERY_S) and not self.lost.is_set():
            sent = time.monotonic()
            try:
                renewed = self._run(
                    "UPDATE leases SET until = clock_timestamp() + make_interval(secs => :ttl)"
                    " WHERE name = :name AND epoch = :epoch AND until > clock_timestamp()",
                    epoch=self.epoch).rowcount == 1
            except Exception as e:  # a blip: the lease holds until good_until, then lapses
                log.warning("leader: could not renew the lease (%s)", e)
                continue
            if not renewed:
                log.error("leader: the lease (epoch %s) was taken over", self.epoch)
                self.lost.set()
                return
            self.good_until = sent + LEASE_S - MARGIN_S

    def check(self) -> None:
        """LeaseLost unless the lease is good on this process's clock (engine actions)."""
        if self.lost.is_set() or time.monotonic() >= self.good_until:
            self.lost.set()
            raise LeaseLost(f"the lease (epoch {self.epoch}) has lapsed")

    def held(self) -> bool:
        try:
            self.check()
        except LeaseLost:
            return False
        return True

    def fence(self, session) -> None:
        """Before each commit of the loop (a Session `before_commit` hook): the lease row, as
        the database has it, is still ours and unexpired; locked until the commit, so a
        takeover waits for it."""
        self.check()
        ok = session.execute(text(
            "SELECT 1 FROM leases WHERE name = :name AND epoch = :epoch AND "
            "until > clock_timestamp() FOR SHARE"), {"name": self.NAME, "epoch": self.epoch})
        if ok.scalar() is None:
            self.lost.set()
            raise LeaseLost(f"the lease (epoch {self.epoch}) was taken over")

    def release(self) -> None:
        """Hand the lease on at once (a clean stop): a standby need not wait for it to
        expire."""
        self.lost.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            self._run("UPDATE leases SET until = clock_timestamp() WHERE name = :name AND "
                      "epoch = :epoch", epoch=self.epoch)
            log.info("leader: stopped; lease (epoch %s) handed on", self.epoch)
        except Exception as e:
            log.warning("leader: could not hand the lease on (%s); it expires by itself", e)


class Fenced:
    """An executor whose actions each check the lease first; what only reads passes
    through."""

    def __init__(self, executor, lease: Lease):
        self._executor, self._lease = executor, lease

    def __getattr__(self, name):
        return getattr(self._executor, name)

    def start(self, req, only=None):
        self._lease.check()
        return self._executor.start(req, only=only)

    def stop(self, req, handles):
        self._lease.check()
        return self._executor.stop(req, handles)

    def kill(self, req, handles):
        self._lease.check()
        return self._executor.kill(req, handles)
