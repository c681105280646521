"""The Firestore store's outbox and delivery documents, and the one place Firestore's errors become ours.

Layout (collection names carry the store's prefix):
- `outbox/{notificationId}`: a notification not yet published (written with its job by
  `firestore_store.py`, deleted by `mark_published`); `jobs/{jobId}/notifications/{seq:012d}` keeps them all.
- `channels/{jobId}.{key}`: a delivery channel, compare-and-set on its update time.
- `jobs/{jobId}/deliveries/{attemptId}`: the delivery attempts.
- `rejections/{sha256(key)}`: a batch's refused items (`records.rejection_record`).
`FirestoreJobStore` is this plus the jobs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.records import rejection_from_record, rejection_record
from shared.domain.delivery import Attempt, Channel
from shared.domain.lifecycle import Notification
from shared.errors import StoreUnavailable, TransientError
from shared.ports import Rejection

MAX_WRITES_PER_TX = 450  # Firestore allows 500 writes per commit
CACHE_SIZE = 2000

# Firestore itself can't take the call right now (unavailable, past its deadline, out of quota: 429 is
# RESOURCE_EXHAUSTED over HTTP): the store is unavailable, as a full disk is for SQLite.
_UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.TooManyRequests,
)
# Worth retrying, but about this call (a transaction aborted by contention, a server-side fault).
_TRANSIENT = (
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.Unknown,
)


def doc_of(snapshot: Any) -> dict[str, Any]:
    """The fields of a snapshot that exists (a query's, or one checked with `.exists`)."""
    return snapshot.to_dict() or {}


def ts_in(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class FirestoreOutbox:
    def __init__(self, client: firestore.Client, prefix: str = ""):
        self.client = client
        self.jobs = client.collection(f"{prefix}jobs")
        self.idempotency = client.collection(f"{prefix}idempotency")
        self.rejections = client.collection(f"{prefix}rejections")
        self.outbox = client.collection(f"{prefix}outbox")
        self.channels = client.collection(f"{prefix}channels")
        self._cache_lock = threading.Lock()
        # (job, channel key, version) -> the update time of that version as last read or written here.
        self._channel_times: dict[tuple[str, str, int], Any] = {}

    def _wrap(self, exc: Exception) -> Exception:
        """Firestore's errors, once, as ours (anything else is returned as it is)."""
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailable(f"Firestore unavailable: {exc.__class__.__name__}: {exc}")
        if isinstance(exc, _TRANSIENT):
            return TransientError(f"Firestore unavailable: {exc.__class__.__name__}: {exc}")
        return exc

    # ---- outbox and deliveries -------------------------------------------------------------------
    def unpublished(self, limit: int = 500, job_id: str | None = None) -> list[Notification]:
        # One job's (after its own handler's commits): an equality filter alone, which needs no index.
        q = self.outbox.where(filter=FieldFilter("jobId", "==", job_id)) if job_id is not None else self.outbox.order_by("at")
        try:
            snaps = list(q.limit(limit).stream())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        notes = [Notification.from_doc(json.loads(doc_of(s)["doc"])) for s in snaps]
        return sorted(notes, key=lambda n: (n.job_id, n.seq))

    def mark_published(self, notifications: Sequence[Notification]) -> None:
        try:
            for start in range(0, len(notifications), MAX_WRITES_PER_TX):
                batch = self.client.batch()
                for n in notifications[start : start + MAX_WRITES_PER_TX]:
                    batch.delete(self.outbox.document(n.id))
                batch.commit()
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def get_notifications(self, job_id: str, after: int = 0, limit: int = 100) -> list[Notification]:
        q = self.jobs.document(job_id).collection("notifications").where(filter=FieldFilter("seq", ">", after)).order_by("seq").limit(limit)
        try:
            return [Notification.from_doc(json.loads(doc_of(s)["doc"])) for s in q.stream()]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def _channel_of(self, snap: Any) -> Channel:
        channel = Channel.from_doc(json.loads(snap.get("doc")), int(snap.get("v")))
        # The write time of the version read: the precondition of the next compare-and-set of it.
        with self._cache_lock:
            self._channel_times[(channel.job_id, channel.key, channel.version)] = snap.update_time
            while len(self._channel_times) > CACHE_SIZE:
                self._channel_times.pop(next(iter(self._channel_times)))
        return channel

    def get_channel(self, job_id: str, key: str) -> Channel | None:
        try:
            snap = self.channels.document(f"{job_id}.{key}").get()
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return self._channel_of(snap) if snap.exists else None

    def list_channels(self, job_id: str) -> list[Channel]:
        try:
            snaps = list(self.channels.where(filter=FieldFilter("jobId", "==", job_id)).stream())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return sorted((self._channel_of(s) for s in snaps), key=lambda c: c.key)

    def save_channel(self, channel: Channel) -> Channel | None:
        """Create (version 0) or compare-and-set (the version read) a channel; None if someone else won.
        A write with a precondition, not a transaction: a loser learns it at once (the emulator makes a
        contended transaction wait seconds), and several notifiers do race for one channel."""
        ref = self.channels.document(f"{channel.job_id}.{channel.key}")
        doc = {
            "jobId": channel.job_id,
            "key": channel.key,
            "v": channel.version + 1,
            "nextAt": channel.next_at,
            "doc": json.dumps(channel.to_doc(), separators=(",", ":")),
        }
        try:
            if channel.version == 0:
                result = ref.create(doc)
            else:
                with self._cache_lock:
                    seen = self._channel_times.pop((channel.job_id, channel.key, channel.version), None)
                if seen is None:
                    current = self.get_channel(channel.job_id, channel.key)
                    if current is None or current.version != channel.version:
                        return None
                    with self._cache_lock:
                        seen = self._channel_times.pop((channel.job_id, channel.key, channel.version), None)
                result = ref.update(doc, option=self.client.write_option(last_update_time=seen))
        except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound):
            return None
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        saved = dataclasses.replace(channel, version=channel.version + 1)
        with self._cache_lock:
            self._channel_times[(saved.job_id, saved.key, saved.version)] = result.update_time
        return saved

    def due_channels(self, now: datetime, limit: int = 100) -> list[Channel]:
        q = self.channels.where(filter=FieldFilter("nextAt", "<=", now)).order_by("nextAt").limit(limit)
        try:
            return [self._channel_of(s) for s in q.stream()]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def record_attempt(self, attempt: Attempt) -> None:
        try:
            self.jobs.document(attempt.job_id).collection("deliveries").document(attempt.id).set(attempt.to_doc())
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def list_attempts(self, job_id: str, after: str = "", limit: int = 100) -> list[dict[str, Any]]:
        q = self.jobs.document(job_id).collection("deliveries").where(filter=FieldFilter("id", ">", after)).order_by("id").limit(limit)
        try:
            return [doc_of(s) for s in q.stream()]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    # ---- a batch's rejected items ----------------------------------------------------------------
    def record_rejection(self, rejection: Rejection) -> bool:
        ref = self.rejections.document(hashlib.sha256(rejection.key.encode()).hexdigest())
        try:
            ref.create(rejection_record(rejection))
            return True
        except gexc.AlreadyExists:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc

    def list_rejections(self, batch_id: str, limit: int = 1000) -> list[Rejection]:
        # Equality only (a single-field index); ordered here, so no composite index is needed.
        q = self.rejections.where(filter=FieldFilter("batchId", "==", batch_id)).limit(limit)
        try:
            docs = [doc_of(s) for s in q.stream()]
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        out = [rejection_from_record(d, ts_in) for d in docs]
        return sorted(out, key=lambda r: (r.index, r.key))
