"""A clock the test moves (`advance`), safe to read from the watcher's threads: time-based behaviour
(the image-pull grace) runs on it instead of on wall-clock sleeps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
