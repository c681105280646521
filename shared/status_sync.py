"""status_sync: the only writer of runtime state besides reconcile (see issue 5 for the full mapping).

This first version records what arrives on `training-events` in the job's timeline and applies log
lines, so the wiring (inline bus, push subscription, CloudEvent function) is exercised end to end.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from shared.domain.job import LogLine
from shared.messages import Message
from shared.ports import JobStore, TimelineEvent
from shared.service import SystemClock

log = logging.getLogger(__name__)


def _ts(raw: Any, default: datetime) -> datetime:
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        except ValueError:
            return default
    return default


class StatusSync:
    def __init__(self, *, store: JobStore, max_log_chars: int, clock: Any | None = None):
        self.store = store
        self.max_log_chars = max_log_chars
        self.clock = clock or SystemClock()

    def handle(self, message: Message) -> None:
        data = message.data if isinstance(message.data, dict) else {}
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or self.store.get(job_id) is None:
            log.warning("event for unknown job %r: acked", job_id)
            return
        now = self.clock.now()
        lines = [
            LogLine(timestamp=_ts(l.get("timestamp"), now), stream=str(l.get("stream", "stdout")), message=str(l.get("message", "")))
            for l in data.get("logs") or []
            if isinstance(l, dict)
        ]
        if lines:
            self.store.append_logs(job_id, lines, self.max_log_chars)
        self.store.append_event(
            job_id,
            TimelineEvent(at=_ts(data.get("observed_at"), now), kind=str(data.get("source", "unknown")), data={k: v for k, v in data.items() if k != "logs"}),
        )
