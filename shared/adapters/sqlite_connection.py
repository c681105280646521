"""The SQLite store's connections: one per thread, WAL, a process-wide write lock, background
checkpoints, and the one place SQLite's storage failures become `StoreUnavailable`.

Storage failures (a full disk, an I/O error, a file that can't be opened, a lock held past the busy
timeout) are `StoreUnavailable`, raised from every public method of the store (`store_errors`): the
caller stored nothing and may retry. A failed commit never leaves a thread's connection inside its
transaction, so writes work again as soon as the disk does, without a restart.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from shared.adapters.sqlite_schema import migrate, ts_out
from shared.errors import StoreUnavailable

log = logging.getLogger(__name__)

# A WAL this long (pages of 4 KiB: ~80 MB) gets a blocking checkpoint that restarts it.
WAL_RESET_PAGES = 20_000

# SQLite result codes (the primary code: the extended code's low byte) that say the storage can't be used
# right now, not that the statement is wrong: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL,
# SQLITE_CANTOPEN. The texts are SQLite's own messages for them, for errors raised without a code.
_UNAVAILABLE_CODES = frozenset({5, 6, 10, 13, 14})
_UNAVAILABLE_TEXTS = ("database or disk is full", "disk i/o error", "unable to open database file", "database is locked")


def _storage_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _UNAVAILABLE_CODES:
        return True
    text = str(exc).lower()
    return any(t in text for t in _UNAVAILABLE_TEXTS)


S = TypeVar("S", bound="SqliteConnections")
P = ParamSpec("P")
R = TypeVar("R")


def store_errors(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Wrap SQLite's storage failures once, here, into `StoreUnavailable` (chained); other SQLite errors
    (a bug in a statement, a corrupt file) propagate as they are."""

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not _storage_failure(exc):
                raise
            self._end_transaction()
            raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc

    functools.update_wrapper(wrapper, method)  # (not `@wraps`: its type would hide the signature)
    return wrapper


class SqliteConnections:
    """A database file and this process's connections to it (one per thread), its write lock and its
    transactions. The store (`sqlite_store.SqliteJobStore`) builds on it."""

    def __init__(
        self,
        path: str | Path,
        *,
        background_checkpoints: bool = False,
        checkpoint_interval: float = 0.5,
        on_notifications: Callable[[], None] | None = None,
    ):
        """`background_checkpoints`: copy the WAL back into the database from a thread of its own, every
        `checkpoint_interval` seconds, instead of inside whichever commit crosses SQLite's 1,000-page mark
        (that commit would then also copy pages and fsync). The embedded server turns it on: its commits
        are on the request path. Durability is the same (WAL, synchronous=NORMAL)."""
        self.path = str(path)
        # Called after a commit that stored notifications (the embedded server wakes its outbox relay
        # with it instead of waiting for the next poll).
        self.on_notifications = on_notifications
        self._background_checkpoints = background_checkpoints and self.path != ":memory:"
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # One writer at a time inside this process: threads queue on a lock instead of meeting
        # SQLITE_BUSY, whose retry sleeps (up to 100 ms each) would dominate latency under load.
        self._write_lock = threading.Lock()
        migrate(self._conn())
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self._background_checkpoints:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(checkpoint_interval,), name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self, interval: float) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            while not self._stop_checkpoints.wait(interval):
                try:
                    _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if wal_pages > WAL_RESET_PAGES:
                        # Writers that never pause keep a passive checkpoint from resetting the WAL: stop
                        # this process's writers for one blocking checkpoint that does.
                        with self._write_lock:
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("background checkpoint of %s failed: %s", self.path, exc)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:  # pragma: no cover - the database went away under us
            log.warning("final checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            if self._background_checkpoints:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            self._local.announce = False
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (a full disk, SQLITE_BUSY) may leave the transaction open, or SQLite
                # may have rolled it back itself: end it either way, or this thread's connection would be
                # "within a transaction" for good and refuse every later BEGIN.
                self._end_transaction()
                raise
        if self._local.announce and self.on_notifications is not None:
            self.on_notifications()

    def _announce(self) -> None:
        """The transaction under way stored notifications: `on_notifications` is called once it commits."""
        self._local.announce = True

    def _end_transaction(self) -> None:
        """Roll back whatever this thread's connection left open; if even that fails, drop the connection
        (the next call opens a fresh one)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback on %s failed (%s): reopening the connection", self.path, exc)
            self._local.conn = None
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken connection
                pass

    def close(self) -> None:
        """Close this thread's connection; stop the background checkpoints (after a last one)."""
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join(30)
            self._checkpointer = None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @store_errors
    def ping(self) -> None:
        """The health check: a real committed write of one tiny row, overwritten each time. A `SELECT 1`
        answers on a full disk, and a write rolled back never reaches the disk."""
        conn = self._conn()
        at = ts_out(datetime.now(UTC))
        with self._write_lock:
            conn.execute("INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at", (at,))
