"""The Kubernetes list-then-watch protocol for one resource, free of domain reactions: it tells its
`deliver` what it saw (`Change`s) and keeps the cursor; what a change means is `watcher.py`'s business.

How it stays correct across disconnects and restarts:
- Start (`list_all`): list the objects (by label), then watch from the list's `resourceVersion`.
- Each watch runs with a server-side `timeoutSeconds` (so the client library never retries on its
  own) and bookmarks; the last `resourceVersion` seen (object or BOOKMARK) is kept and a dropped or
  timed-out connection re-watches from it: nothing is missed and nothing is replayed.
- `410 Gone` (an ERROR event with code 410, or an HTTP 410): the history we were at is compacted; the
  resource is listed again, objects that vanished meanwhile are delivered as DELETED, the rest as
  MODIFIED (one batch), and the watch resumes from the new list's `resourceVersion`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared.adapters.kubernetes.client import GONE, is_gone, shutdown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One thing the stream said: `kind` is ADDED, MODIFIED or DELETED; `obj` the object as JSON."""

    kind: str
    obj: dict[str, Any]


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def uid_of(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")


def resource_version_of(obj: dict[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


def not_older(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether `new` is at least as recent as `old` (resourceVersions compared as numbers when they are,
    as every API server in practice makes them; opaque ones are taken as newer)."""
    if old is None:
        return True
    a, b = resource_version_of(new) or "", resource_version_of(old) or ""
    return not (a.isdigit() and b.isdigit()) or int(a) >= int(b)


Deliver = Callable[[list[Change]], None]


class ResourceWatch:
    """List-then-watch of one resource (`list_call`: e.g. `BatchV1Api.list_namespaced_job`) in one
    namespace. `run(deliver)` loops until `stop_event` is set; `deliver` gets each batch of changes in
    order, from the loop's thread.

    `_lock` guards `_known` (uid -> the object as last delivered, what a re-list compares against), the
    one piece of state another thread touches: the reaction's direct reads report through `saw()`."""

    def __init__(
        self,
        resource: str,
        list_call: Callable[..., Any],
        namespace: str,
        label_selector: str,
        stop_event: threading.Event,
        *,
        watch_timeout_seconds: int,
        connect_timeout: float,
        retry_seconds: float,
        max_retry_seconds: float,
        watch_starts: list[tuple[str, str | None]] | None = None,
    ):
        self.resource = resource
        self.list_call = list_call
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout_seconds = watch_timeout_seconds
        self.connect_timeout = connect_timeout
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._stop = stop_event
        self.resource_version: str | None = None  # the cursor; None: list (again) before watching
        self.lists = 0  # lists done (logs and tests)
        self.watch_starts = watch_starts if watch_starts is not None else []  # (resource, from rv), in order
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, Any]] = {}
        self._watch: Any = None  # the open `kubernetes.watch.Watch` (cut by stop())
        self._stream: Any = None  # its HTTP response (cut by stop())

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def list_all(self) -> list[dict[str, Any]]:
        """List (the start of the protocol): the objects now, and the cursor to watch from."""
        resp = self.list_call(self.namespace, label_selector=self.label_selector, _preload_content=False, _request_timeout=(self.connect_timeout, 60))
        body = json.loads(resp.data)
        self.lists += 1
        items = list(body.get("items") or [])
        with self._lock:
            self._known = {uid_of(o): o for o in items}
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return items

    def saw(self, objects: Iterable[dict[str, Any]]) -> None:
        """Objects learned outside the stream (a direct read): a later re-list must know of them too."""
        with self._lock:
            for obj in objects:
                uid = uid_of(obj)
                if uid and not_older(obj, self._known.get(uid)):
                    self._known[uid] = obj

    def stop(self) -> None:
        """Cut the open watch (the caller has set `stop_event`)."""
        if self._watch is not None:
            self._watch.stop()
        if self._stream is not None:
            shutdown(self._stream)

    def run(self, deliver: Deliver) -> None:
        backoff = self.retry_seconds
        while not self.stopped:
            try:
                if self.resource_version is None:
                    self._relist(deliver)
                self._watch_once(deliver)
                backoff = self.retry_seconds
            except Exception as exc:  # noqa: BLE001 - sorted below; the loop only ends on stop()
                if self.stopped:
                    break
                if isinstance(exc, Gone) or is_gone(exc):
                    log.info("watch of %s: 410 Gone at resourceVersion %s; listing again", self.resource, self.resource_version)
                    self.resource_version = None
                    continue
                log.warning("watch of %s failed (%s: %s); resuming from %s in %.1fs", self.resource, type(exc).__name__, exc, self.resource_version, backoff)
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.max_retry_seconds)

    def _relist(self, deliver: Deliver) -> None:
        """After 410 Gone: list again; what vanished meanwhile is delivered as deleted."""
        with self._lock:
            before = dict(self._known)
        items = self.list_all()
        current = {uid_of(o) for o in items}
        changes = [Change("DELETED", old) for uid, old in before.items() if uid not in current]
        deliver(changes + [Change("MODIFIED", obj) for obj in items])
        log.info("re-listed %s after 410 Gone: %d objects, resuming at resourceVersion %s", self.resource, len(items), self.resource_version)

    def _remember(self, change: Change) -> None:
        with self._lock:
            if change.kind == "DELETED":
                self._known.pop(uid_of(change.obj), None)
            else:
                self._known[uid_of(change.obj)] = change.obj

    def _watch_once(self, deliver: Deliver) -> None:
        from kubernetes import watch

        # Raw dicts: the pure module reads JSON, not models.
        w = watch.Watch(return_type="object")  # type: ignore[no-untyped-call]  # the kubernetes client ships no type hints
        self._watch = w
        if self.stopped:
            return
        since = self.resource_version
        self.watch_starts.append((self.resource, since))

        def call(*args: Any, **kwargs: Any) -> Any:
            # Registered before the flag is read, and stop() sets the flag before reading these: a
            # stop() that lands while the request is being made still cuts it.
            resp = self.list_call(*args, **kwargs)
            self._stream = resp
            if self.stopped:
                shutdown(resp)
            return resp

        stream = w.stream(  # type: ignore[no-untyped-call]  # the kubernetes client ships no type hints
            call,
            self.namespace,
            label_selector=self.label_selector,
            resource_version=since,
            timeout_seconds=self.watch_timeout_seconds,
            allow_watch_bookmarks=True,
            _request_timeout=(self.connect_timeout, self.watch_timeout_seconds + 30),
        )
        try:
            for event in stream:
                if self.stopped:
                    break
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                if kind == "ERROR":  # the client raises for these; kept in case it stops doing so
                    if obj.get("code") == GONE:
                        raise Gone(obj.get("message"))
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                rv = resource_version_of(obj)
                if kind != "BOOKMARK":
                    change = Change(str(kind), obj)
                    self._remember(change)
                    deliver([change])
                if rv:
                    self.resource_version = rv
        finally:
            stream.close()
            self._watch = None
            self._stream = None
