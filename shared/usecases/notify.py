"""notify: announce every job transition — the outbox relay and webhook delivery.

- `OutboxRelay` publishes what the store's outbox holds (each notification was written in the very
  transaction that made its transition) to `job-transitions`, ordering key = the job id, and marks it
  published. A crash between the commit and the publish loses nothing: what is unpublished goes out at
  the next run (on start, after each handler, from reconcile); a re-publish carries the same id.
- `Notifier` consumes `job-transitions`: it opens (or wakes) one delivery channel per subscriber of the
  job — `WEBHOOK_URLS` and the job's own `webhooks` (signed Standard Webhooks), and the job's studio
  callback (`{"status", "log"}` with its unsealed `Authorization`, `shared.domain.studio_callbacks`)
  — and runs the channels that are due. A channel
  delivers its job's notifications to its subscriber strictly in order (`shared.domain.delivery`), with
  retries on the schedule; channels are independent, so a slow or dead subscriber holds back only
  itself. Every attempt is recorded (`GET /jobs/{id}/deliveries`). At least once: a notifier that dies
  mid-attempt leaves a lease that expires, and the attempt is made again with the same `webhook-id`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from shared import jsonutil
from shared.domain.delivery import ACTIVE, IDLE, STUDIO, WEBHOOK, Attempt, Channel, Subscriber, idle, lease, new_channel, skip, step, wake
from shared.domain.job import Job
from shared.domain.lifecycle import PROGRESS, STATUS, Notification
from shared.domain.studio_callbacks import callback_body
from shared.domain.webhooks import Schedule, headers_for, judge
from shared.errors import PermanentError
from shared.messages import Message
from shared.ports import Bus, Clock, JobStore, SystemClock

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, url: str, headers: dict[str, str], body: bytes) -> Any: ...


@dataclass(frozen=True)
class Unsent:
    """An attempt that could not be made (the Authorization won't unseal): recorded as refused."""

    error: str
    status_code: int | None = None
    duration_ms: float = 0.0
    refused: bool = True


class OutboxRelay:
    def __init__(self, *, store: JobStore, bus: Bus, topic: str, batch: int = 500):
        self.store = store
        self.bus = bus
        self.topic = topic
        self.batch = batch

    def run_once(self, job_id: str | None = None) -> int:
        """Publish every unpublished notification (in each job's order), or only `job_id`'s (what a
        handler just committed: concurrent handlers then don't all publish the same backlog); returns how
        many went out. A publish that fails stops the run: the rest stays in the outbox for the next one."""
        total = 0
        while True:
            pending = self.store.unpublished(self.batch, job_id=job_id)
            if not pending:
                return total
            done = []
            try:
                for n in pending:
                    self.bus.publish(
                        self.topic,
                        {"job_id": n.job_id, "seq": n.seq, "id": n.id, "status": n.status, "previous": n.previous},
                        attributes={"notification_id": n.id, "job_id": n.job_id},
                        ordering_key=n.job_id,
                    )
                    done.append(n)
            finally:
                self.store.mark_published(done)
            total += len(done)
            if len(pending) < self.batch:
                return total


class Notifier:
    def __init__(
        self,
        *,
        store: JobStore,
        sender: Sender,
        signing_key: bytes | None,
        global_urls: Sequence[str] = (),
        schedule: Schedule | None = None,
        clock: Clock | None = None,
        lease_seconds: float = 60.0,
        workers: int = 8,
        rand: Callable[[], float] = random.random,
        background: bool = False,
        hold_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        unseal: Callable[[str], str] | None = None,
    ):
        """`background`: hand the channels to this notifier's own threads and return at once (the
        embedded server, where `handle` runs on a bus worker that launches and status events share);
        otherwise `handle` delivers before it returns (a Cloud Function's request), and stays up to
        `hold_seconds` for this job's retries that come due by then (the schedule's first ones, 5 s); later
        ones are run by reconcile (`run_due`, every minute) or by the next message. `unseal` opens a
        callback's sealed Authorization (`shared.sealing`, built at the edge)."""
        self.store = store
        self.sender = sender
        self.key = signing_key
        self.global_urls = tuple(global_urls)
        self.schedule = schedule or Schedule()
        self.clock = clock or SystemClock()
        # Longer than one attempt can take (its timeout), so a live attempt is never doubled.
        self.lease_seconds = lease_seconds
        self.rand = rand
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self.background = background
        self.hold_seconds = hold_seconds
        self.sleep = sleep
        self.unseal = unseal
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def subscribers(self, job: Job) -> list[Subscriber]:
        urls = list(dict.fromkeys([*self.global_urls, *job.webhooks]))
        subs = [Subscriber(WEBHOOK, url) for url in urls]
        if job.callback is not None:
            subs.append(Subscriber(STUDIO, job.callback.url))
        return subs

    # ---- entry points ----------------------------------------------------------------------------
    def handle(self, message: Message) -> None:
        """A transition on `job-transitions`: open or wake the job's channels, then deliver what is due."""
        data = message.data if isinstance(message.data, dict) else {}
        job_id = data.get("job_id")
        if not isinstance(job_id, str):
            log.warning("job-transitions message without a job id: acked (%s)", message.id)
            return
        self._run(self._due(self.wake(job_id)))
        if self.background:
            return
        until = time.monotonic() + self.hold_seconds
        while True:
            channels = self.store.list_channels(job_id)
            waiting = [c.next_at for c in channels if c.state == ACTIVE and c.next_at is not None]
            if not waiting:
                break
            wait = (min(waiting) - self.clock.now()).total_seconds()
            if wait > until - time.monotonic():
                break
            self.sleep(max(wait, 0.0))
            self.deliver_job(job_id)
        # Retries of other jobs that came due meanwhile ride along: where no scheduler runs between
        # transitions (the emulator stack), this is what makes them happen.
        self.run_due(limit=10)

    def wake(self, job_id: str) -> list[Channel]:
        """Open the job's missing channels and wake its idle ones; returns its channels as they now are."""
        job = self.store.get(job_id)
        if job is None:
            return []
        subscribers = self.subscribers(job)
        if self.key is None and any(s.kind == WEBHOOK for s in subscribers):
            log.error("job %s has webhook subscribers but WEBHOOK_SIGNING_SECRET is not set: nothing delivered to them", job_id)
            subscribers = [s for s in subscribers if s.kind != WEBHOOK]
        if not subscribers:
            return []
        now = self.clock.now()
        existing = {c.key: c for c in self.store.list_channels(job_id)}
        out = []
        for sub in subscribers:
            channel = existing.get(sub.key)
            changed = new_channel(job_id, sub, now) if channel is None else wake(channel, now)
            saved = self.store.save_channel(changed) if changed is not None else None
            # Lost to another notifier, or nothing to change: as read (another notifier runs it if busy).
            chosen = saved or channel
            if chosen is not None:
                out.append(chosen)
        return out

    def _due(self, channels: Sequence[Channel]) -> list[Channel]:
        now = self.clock.now()
        return [c for c in channels if c.next_at is not None and c.next_at <= now]

    def deliver_job(self, job_id: str) -> None:
        self._run(self._due(self.store.list_channels(job_id)))

    def run_due(self, limit: int = 200) -> int:
        """Every channel whose next attempt is due (retries; the embedded loop and reconcile call this)."""
        due = self.store.due_channels(self.clock.now(), limit)
        self._run(due)
        return len(due)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # ---- one channel -----------------------------------------------------------------------------
    def _run(self, channels: Sequence[Channel]) -> None:
        if self.background:
            for c in channels:
                key = (c.job_id, c.key)
                with self._lock:
                    if key in self._in_flight:
                        continue  # already being run: it picks up what is new before it stops
                    self._in_flight.add(key)
                self._pool.submit(self._run_tracked, c, key)
            return
        if len(channels) == 1:
            self.run_channel(channels[0])
            return
        for future in [self._pool.submit(self.run_channel, c) for c in channels]:
            future.result()

    def _run_tracked(self, channel: Channel, key: tuple[str, str]) -> None:
        try:
            self.run_channel(channel)
        except Exception:  # noqa: BLE001 - a store hiccup: the lease expires and the channel is run again
            log.exception("delivery on channel %s of job %s failed", channel.key, channel.job_id)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def run_channel(self, channel: Channel) -> None:
        """Deliver the channel's notifications in order while they succeed (or are given up); stop at the
        first that waits for a retry. Another notifier holding the channel wins: this one backs off."""
        leased = False
        while True:
            now = self.clock.now()
            claimed = channel if leased else self.store.save_channel(lease(channel, now, self.lease_seconds))
            if claimed is None:
                return
            pending = self.store.get_notifications(channel.job_id, after=claimed.cursor, limit=1)
            if not pending:
                rested = self.store.save_channel(idle(claimed))
                # A notification committed while this looked (its wake saw the channel busy) is
                # delivered now, not with the next one.
                if rested is None or not self.store.get_notifications(channel.job_id, after=rested.cursor, limit=1):
                    return
                woken = self.store.save_channel(wake(rested, now) or rested)
                if woken is None:
                    return
                channel, leased = woken, False
                continue
            n = pending[0]
            try:
                request = self._request(claimed, n, now)
            except PermanentError as exc:  # an Authorization that won't unseal: recorded, not retried
                result: Any = Unsent(f"not sent: {exc}")
            else:
                if request is None:
                    # Nothing for this subscriber in this one: on to the next, keeping the lease.
                    skipped = self.store.save_channel(lease(skip(claimed, n.seq, now), now, self.lease_seconds))
                    if skipped is None:
                        return
                    channel, leased = skipped, True
                    continue
                result = self.sender.send(claimed.url, *request)
            verdict = judge(result.status_code, result.error, result.refused)
            error = result.error or (None if verdict.value == "delivered" else f"HTTP {result.status_code}")
            self.store.record_attempt(
                Attempt(
                    job_id=n.job_id,
                    notification_id=n.id,
                    notification_seq=n.seq,
                    subscriber=claimed.key,
                    url=_display(claimed.url),
                    attempt=claimed.attempt + 1,
                    at=now,
                    verdict=verdict.value,
                    status_code=result.status_code,
                    duration_ms=result.duration_ms,
                    error=error,
                )
            )
            now = self.clock.now()
            after = step(claimed, n.seq, verdict, error, now, self.schedule, self.rand)
            going_on = after.state == ACTIVE and after.next_at is not None and after.next_at <= now
            # Going on with the next notification: keep the lease in the same write.
            saved = self.store.save_channel(lease(after, now, self.lease_seconds) if going_on else after)
            if saved is None or not going_on:
                if saved is not None and saved.state == ACTIVE and saved.attempt:
                    log.info("webhook %s to %s: %s, retry at %s", n.id, _display(saved.url), error, saved.next_at)
                return
            channel = saved
            leased = True

    def _request(self, channel: Channel, n: Notification, now: Any) -> tuple[dict[str, str], bytes] | None:
        """The headers and body of notification `n` for this channel's kind, or None: skip it."""
        if channel.kind == STUDIO:
            # A progress notification with anything after it is stale (fresher progress, or a status past running).
            superseded = n.kind == PROGRESS and bool(self.store.get_notifications(n.job_id, after=n.seq, limit=1))
            payload = callback_body(n, superseded=superseded)
            if payload is None:
                return None
            headers = {"content-type": "application/json"}
            job = self.store.get(n.job_id)
            sealed = job.callback.sealed_authorization if job is not None and job.callback is not None else None
            if sealed:
                if self.unseal is None:
                    raise PermanentError("the callback's Authorization is sealed but no key is set to unseal it (WEBHOOK_SIGNING_SECRET)")
                headers["authorization"] = self.unseal(sealed)
            return headers, jsonutil.dumps(payload)
        if n.kind != STATUS:
            return None  # Standard Webhooks subscribers get transitions only
        assert self.key is not None
        body = jsonutil.dumps(n.body)
        return headers_for(self.key, n.id, int(now.timestamp()), body), body


def _display(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


__all__ = ["Notifier", "OutboxRelay", "IDLE", "ACTIVE"]
