"""Stored shapes shared by the SQLite and Firestore stores (stored shape != domain object): the job
and a batch's rejection, and the list cursor.

`to_record` / `from_record` are the only place that knows a job's field names on disk,
`rejection_record` / `rejection_from_record` a rejection's. Timestamps are kept as `datetime` here; each
store converts them to its own type (ISO text for SQLite, native timestamps for Firestore) with the
`ts_out` / `ts_in` hooks.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared import jsonutil
from shared.domain.backend import BackendKind
from shared.domain.callback import Callback
from shared.domain.job import Job
from shared.domain.resources import Resources
from shared.domain.status import FailureClass, JobStatus
from shared.ports import Rejection

SCHEMA_VERSION = 1

_TIMESTAMPS = ("createdAt", "updatedAt", "startedAt", "finishedAt", "lastEventAt", "progressNotifiedAt")


def _identity(value: Any) -> Any:
    return value


def to_record(job: Job, ts_out: Callable[[datetime], Any] = _identity) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": job.id,
        "name": job.name,
        "backend": job.backend.value,
        "status": job.status.value,
        "statusReason": job.status_reason,
        "failureClass": job.failure_class.value if job.failure_class else None,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
        "lastEventAt": job.last_event_at,
        "datasetFile": job.dataset_file,
        "outputDir": job.output_dir,
        "args": list(job.args),
        "modelId": job.model_id,
        "uploadOutputTo": job.upload_output_to,
        "envNames": list(job.env_names),
        "labels": dict(job.labels),
        "webhooks": list(job.webhooks),
        "resources": job.resources.to_dict(),
        "externalId": job.external_id,
        # The backend's own short id (Vertex's numeric CustomJob id, the Kubernetes Job name), so
        # events that name only that (Vertex log entries) find their job.
        "externalKey": job.external_id.rstrip("/").rsplit("/", 1)[-1] if job.external_id else None,
        "exitCode": job.exit_code,
        "command": job.command,
        "error": job.error,
        "logTail": job.log_tail,
        "logCount": job.log_count,
        "eventCount": job.event_count,
        "progress": job.progress,
        "progressNotifiedAt": job.progress_notified_at,
        # The Authorization value only sealed (`shared.sealing`): the store never holds it in plain text.
        "callback": job.callback.to_dict() if job.callback is not None else None,
        "manifest": jsonutil.dumps(job.manifest, sort_keys=True).decode() if job.manifest is not None else None,
        "dryRun": job.dry_run,
        "cancelRequested": job.cancel_requested,
        "idempotencyKey": job.idempotency_key,
        "requestHash": job.request_hash,
        "logCursors": dict(job.log_cursors),
        "recentEventIds": list(job.recent_event_ids),
        "version": job.version,
    }
    for key in _TIMESTAMPS:
        if rec[key] is not None:
            rec[key] = ts_out(rec[key])
    return rec


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def from_record(rec: dict[str, Any], ts_in: Callable[[Any], datetime] = _identity) -> Job:
    def ts(key: str) -> datetime | None:
        raw = rec.get(key)
        return None if raw is None else _as_utc(ts_in(raw))

    manifest = rec.get("manifest")
    return Job(
        id=rec["id"],
        name=rec["name"],
        backend=BackendKind(rec["backend"]),
        status=JobStatus(rec["status"]),
        status_reason=rec.get("statusReason"),
        failure_class=FailureClass(rec["failureClass"]) if rec.get("failureClass") else None,
        created_at=ts("createdAt"),  # type: ignore[arg-type]
        updated_at=ts("updatedAt"),  # type: ignore[arg-type]
        started_at=ts("startedAt"),
        finished_at=ts("finishedAt"),
        last_event_at=ts("lastEventAt"),
        dataset_file=rec["datasetFile"],
        output_dir=rec["outputDir"],
        args=tuple(rec.get("args") or ()),
        model_id=rec.get("modelId"),
        upload_output_to=rec.get("uploadOutputTo"),
        env_names=tuple(rec.get("envNames") or ()),
        labels=dict(rec.get("labels") or {}),
        webhooks=tuple(rec.get("webhooks") or ()),
        resources=Resources.from_dict(rec.get("resources")),
        external_id=rec.get("externalId"),
        exit_code=rec.get("exitCode"),
        command=rec.get("command"),
        error=rec.get("error"),
        log_tail=rec.get("logTail") or "",
        log_count=int(rec.get("logCount") or 0),
        event_count=int(rec.get("eventCount") or 0),
        progress=rec.get("progress"),
        progress_notified_at=ts("progressNotifiedAt"),
        callback=Callback.from_dict(rec.get("callback")),
        manifest=jsonutil.loads(manifest) if isinstance(manifest, str) else manifest,
        dry_run=bool(rec.get("dryRun")),
        cancel_requested=bool(rec.get("cancelRequested")),
        idempotency_key=rec.get("idempotencyKey"),
        request_hash=rec.get("requestHash"),
        log_cursors={str(k): int(v) for k, v in (rec.get("logCursors") or {}).items()},
        recent_event_ids=tuple(rec.get("recentEventIds") or ()),
        version=int(rec.get("version") or 0),
    )


def rejection_record(rejection: Rejection, ts_out: Callable[[datetime], Any] = _identity) -> dict[str, Any]:
    return {
        "key": rejection.key,
        "batchId": rejection.batch_id,
        "index": rejection.index,
        "error": rejection.error,
        "errors": rejection.errors,
        "at": ts_out(rejection.at),
        "messageId": rejection.message_id,
    }


def rejection_from_record(rec: dict[str, Any], ts_in: Callable[[Any], datetime] = _identity) -> Rejection:
    return Rejection(
        key=rec["key"],
        batch_id=rec["batchId"],
        index=rec["index"],
        error=rec["error"],
        errors=rec.get("errors") or [],
        at=ts_in(rec["at"]),
        message_id=rec.get("messageId", ""),
    )


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([_as_utc(created_at).isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on anything that isn't a cursor we made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return _as_utc(datetime.fromisoformat(created)), str(job_id)
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the caller's mistake
        raise ValueError("invalid cursor") from exc
