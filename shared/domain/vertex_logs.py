"""Vertex AI log entries (a Cloud Logging sink on `resource.type="ml_job"` publishing to
`training-events`) turned into log lines and state hints. Pure.

A `LogEntry` names the CustomJob by its numeric id (`resource.labels.job_id`), not by our job id:
status_sync looks the job up by that key. The replica's stdout arrives at severity INFO (or DEFAULT),
its stderr at ERROR; the service's own lifecycle lines ("Job is running.", "Job completed
successfully.", ...) become state hints that the Vertex mapping understands, and reconcile confirms the
truth from the API. `insertId` is the event id, so a redelivered entry is applied once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.events import EventLog, TrainingEvent, parse_time

# Lifecycle lines the Vertex service writes into the job's log, in order of precedence.
STATE_HINTS: tuple[tuple[str, str], ...] = (
    ("job completed successfully", "JOB_STATE_SUCCEEDED"),
    ("job failed", "JOB_STATE_FAILED"),
    ("job was cancelled", "JOB_STATE_CANCELLED"),
    ("job is cancelled", "JOB_STATE_CANCELLED"),
    ("job is running", "JOB_STATE_RUNNING"),
    ("waiting for job to be provisioned", "JOB_STATE_PENDING"),
    ("job is preparing", "JOB_STATE_PENDING"),
)
STDERR_SEVERITIES = {"ERROR", "CRITICAL", "ALERT", "EMERGENCY", "WARNING"}


@dataclass(frozen=True)
class VertexLogEvent:
    vertex_job_id: str
    event: TrainingEvent  # job_id is "" until status_sync resolves it


def is_log_entry(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("resource"), dict) and data["resource"].get("type") == "ml_job"


def _text(entry: dict[str, Any]) -> str:
    text = entry.get("textPayload")
    if isinstance(text, str):
        return text
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict):
        for key in ("message", "msg", "text"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
        import json

        return json.dumps(payload, sort_keys=True)
    return ""


def parse_log_entry(entry: Any, now: datetime) -> VertexLogEvent | None:
    """A LogEntry -> the job's Vertex id and an event; None when it isn't an ml_job entry."""
    if not is_log_entry(entry):
        return None
    labels = entry["resource"].get("labels") or {}
    vertex_id = str(labels.get("job_id") or "")
    if not vertex_id:
        return None
    ts = parse_time(entry.get("timestamp") or entry.get("receiveTimestamp"), now)
    text = _text(entry).rstrip("\n")
    severity = str(entry.get("severity") or "DEFAULT").upper()
    log_name = str(entry.get("logName") or "")
    service_line = "ml.googleapis.com" in log_name.replace("%2F", "/") or not labels.get("task_name")
    state = None
    message = None
    if service_line:
        lowered = text.lower()
        for needle, hint in STATE_HINTS:
            if needle in lowered:
                state = hint
                message = text
                break
    lines: tuple[EventLog, ...] = ()
    if text and state is None:
        lines = (EventLog(seq=0, timestamp=ts, stream="stderr" if severity in STDERR_SEVERITIES else "stdout", message=text),)
    event = TrainingEvent(
        job_id="",
        source="vertex",
        observed_at=ts,
        event_id=str(entry.get("insertId")) if entry.get("insertId") else None,
        state=state,
        message=message,
        logs=lines,
    )
    return VertexLogEvent(vertex_id, event)
