"""The SQLite store's outbox and delivery tables: notifications (written with their job by
`sqlite_store.py`, published by the relay), delivery channels (compare-and-set on their version), delivery
attempts and a batch's rejected items. `SqliteJobStore` is this plus the jobs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared import jsonutil
from shared.adapters.records import rejection_from_record, rejection_record
from shared.adapters.sqlite_connection import SqliteConnections, store_errors
from shared.adapters.sqlite_schema import ts_in, ts_out
from shared.domain.delivery import Attempt, Channel
from shared.domain.lifecycle import Notification
from shared.ports import Rejection

# The rejection's own columns, kept out of its stored document.
_REJECTION_COLUMNS = ("key", "batchId", "index")


class SqliteOutbox(SqliteConnections):
    # ---- outbox ----------------------------------------------------------------------------------
    @store_errors
    def unpublished(self, limit: int = 500, job_id: str | None = None) -> list[Notification]:
        sql: str
        params: tuple[Any, ...]
        if job_id is None:
            sql, params = "SELECT doc FROM notifications WHERE published = 0 ORDER BY job_id, seq LIMIT ?", (limit,)
        else:
            sql, params = "SELECT doc FROM notifications WHERE published = 0 AND job_id = ? ORDER BY seq LIMIT ?", (job_id, limit)
        rows = self._conn().execute(sql, params).fetchall()
        return [Notification.from_doc(jsonutil.loads(r[0])) for r in rows]

    @store_errors
    def mark_published(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            with self._tx() as db:
                db.executemany("UPDATE notifications SET published = 1 WHERE job_id = ? AND seq = ?", [(n.job_id, n.seq) for n in notifications])

    @store_errors
    def get_notifications(self, job_id: str, after: int = 0, limit: int = 100) -> list[Notification]:
        rows = self._conn().execute("SELECT doc FROM notifications WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)).fetchall()
        return [Notification.from_doc(jsonutil.loads(r[0])) for r in rows]

    # ---- delivery channels and attempts ----------------------------------------------------------
    @staticmethod
    def _channel_of(row: tuple[str, int]) -> Channel:
        return Channel.from_doc(jsonutil.loads(row[0]), row[1])

    @store_errors
    def get_channel(self, job_id: str, key: str) -> Channel | None:
        row = self._conn().execute("SELECT doc, version FROM channels WHERE job_id = ? AND key = ?", (job_id, key)).fetchone()
        return self._channel_of(row) if row else None

    @store_errors
    def list_channels(self, job_id: str) -> list[Channel]:
        rows = self._conn().execute("SELECT doc, version FROM channels WHERE job_id = ? ORDER BY key", (job_id,)).fetchall()
        return [self._channel_of(r) for r in rows]

    @store_errors
    def save_channel(self, channel: Channel) -> Channel | None:
        """Create (version 0) or compare-and-set (the version read) a channel; None if someone else won."""
        doc = jsonutil.dumps(channel.to_doc()).decode()
        next_at = ts_out(channel.next_at) if channel.next_at else None
        conn = self._conn()
        with self._write_lock:
            if channel.version == 0:
                cur = conn.execute("INSERT OR IGNORE INTO channels VALUES (?, ?, 1, ?, ?)", (channel.job_id, channel.key, next_at, doc))
            else:
                cur = conn.execute(
                    "UPDATE channels SET version = version + 1, next_at = ?, doc = ? WHERE job_id = ? AND key = ? AND version = ?",
                    (next_at, doc, channel.job_id, channel.key, channel.version),
                )
        return dataclasses.replace(channel, version=channel.version + 1) if cur.rowcount == 1 else None

    @store_errors
    def due_channels(self, now: datetime, limit: int = 100) -> list[Channel]:
        rows = (
            self._conn()
            .execute("SELECT doc, version FROM channels WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?", (ts_out(now), limit))
            .fetchall()
        )
        return [self._channel_of(r) for r in rows]

    @store_errors
    def record_attempt(self, attempt: Attempt) -> None:
        with self._write_lock:
            self._conn().execute("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?)", (attempt.job_id, attempt.id, jsonutil.dumps(attempt.to_doc()).decode()))

    @store_errors
    def list_attempts(self, job_id: str, after: str = "", limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT doc FROM deliveries WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit)).fetchall()
        return [jsonutil.loads(r[0]) for r in rows]

    # ---- a batch's rejected items ----------------------------------------------------------------
    @store_errors
    def record_rejection(self, rejection: Rejection) -> bool:
        rec = rejection_record(rejection, ts_out)
        doc = {k: v for k, v in rec.items() if k not in _REJECTION_COLUMNS}
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO rejections VALUES (?, ?, ?, ?)",
                (rejection.key, rejection.batch_id, rejection.index, json.dumps(doc)),
            )
            return cur.rowcount == 1

    @store_errors
    def list_rejections(self, batch_id: str, limit: int = 1000) -> list[Rejection]:
        rows = self._conn().execute("SELECT key, batch_id, idx, doc FROM rejections WHERE batch_id = ? ORDER BY idx, key LIMIT ?", (batch_id, limit)).fetchall()
        return [rejection_from_record({**json.loads(doc), "key": key, "batchId": bid, "index": idx}, ts_in) for key, bid, idx, doc in rows]
