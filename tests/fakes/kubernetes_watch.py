"""`FakeKubernetesAPI` with what the cluster watcher's tests need beyond the base fake:

- streams are sent with `Transfer-Encoding: chunked`, as the real API server sends them, so the
  official client sees each watch event / log line when it is written (without it urllib3 reads an
  unsized body to EOF and the events arrive only when the watch times out);
- watch history that can expire: `compact()` makes every watch from an older `resourceVersion`
  answer `410 Gone` — as an `ERROR` watch event (what the real server does; default) or, with
  `gone_as_http=True`, as an HTTP 410 `Status`;
- `paused()` holds back watch deliveries (changes made inside are queued), and `drop_streams()` cuts
  every open watch / log stream abruptly (no final chunk: the client sees a broken connection);
- watches send a `BOOKMARK` with the current `resourceVersion` before they time out when the client
  allows bookmarks;
- `pods/log?follow=true` follows: it sends what is there, then appended text (`append_pod_log`) as
  whole lines, until the pod is `Succeeded`/`Failed` or gone; `timestamps=true` prefixes each line
  with an RFC 3339 time, as the kubelet does;
- `watch_requests` logs each watch as (resource, resourceVersion asked for, answered with 410?).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tests.fakes._server import Request, Response
from tests.fakes.kubernetes_api import FakeKubernetesAPI

DROP = object()  # a stream item: cut the connection here
_LOG_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")
POLL = 0.02


class WatchableFakeKubernetesAPI(FakeKubernetesAPI):
    def __init__(self, *args: Any, gone_as_http: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.compacted_rv = 0
        self.gone_as_http = gone_as_http
        self.watch_requests: list[tuple[str, str | None, bool]] = []
        self._generation = 0  # bumped by drop_streams(): streams of an older generation end
        self._paused = False

    # ---- controls --------------------------------------------------------------------------------
    def compact(self) -> int:
        """Forget the history before now: watches from an older resourceVersion get 410 Gone."""
        with self._changed:
            self.compacted_rv = self.resource_version
            return self.compacted_rv

    def drop_streams(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    @contextmanager
    def paused(self, drop: bool = True) -> Iterator[None]:
        """Watches deliver nothing inside; on exit the open ones are cut (`drop`) and delivery resumes."""
        with self._changed:
            self._paused = True
        try:
            yield
        finally:
            with self._changed:
                if drop:
                    self._generation += 1
                self._paused = False
                self._changed.notify_all()

    def append_pod_log(self, namespace: str, name: str, text: str) -> None:
        with self._changed:
            self.pod_logs[(namespace, name)] = self.pod_logs.get((namespace, name), "") + text
            self._changed.notify_all()

    def watches(self, resource: str) -> list[tuple[str, str | None, bool]]:
        with self.lock:
            return [w for w in self.watch_requests if w[0] == resource]

    # ---- routes ----------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        m = _LOG_PATH.match(request.path)
        if m and request.method == "GET" and request.param("follow") in ("true", "1"):
            return self._follow_log(request, m["ns"], m["name"])
        return super().route(request)

    def _gone(self, since: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since} ({self.compacted_rv})",
            "reason": "Expired",
            "code": 410,
        }

    def _watch(self, request: Request, res: str, ns: str | None, terms: list, field_sel: str | None) -> Response:
        timeout = float(request.param("timeoutSeconds") or 5)
        since = request.param("resourceVersion")
        bookmarks = request.param("allowWatchBookmarks") in ("true", "1")
        with self._changed:
            gen = self._generation
            expired = since not in (None, "", "0") and int(since) < self.compacted_rv
            self.watch_requests.append((res, since, expired))
            if expired:
                if self.gone_as_http:
                    return Response(410, self._gone(str(since)))
                return Response(200, stream=iter([self._watch_line("ERROR", self._gone(str(since)))]))

        visible = self._watch_filter(res, ns, terms, field_sel)

        def stream() -> Iterator[Any]:
            deadline = time.monotonic() + timeout
            with self._changed:
                initial, cursor = self._watch_start(since, visible)
            yield from initial
            while not self._stopping.is_set():
                with self._changed:
                    if self._generation != gen:
                        yield DROP
                        return
                    left = deadline - time.monotonic()
                    pending: list[bytes] = []
                    if not self._paused:
                        pending, cursor = self._watch_pending(cursor, visible)
                    if not pending:
                        if left <= 0:
                            if bookmarks and not self._paused:
                                mark = {"kind": RESOURCE_KINDS[res], "apiVersion": RESOURCE_VERSIONS[res], "metadata": {"resourceVersion": str(cursor)}}
                                yield self._watch_line("BOOKMARK", mark)
                            return
                        self._changed.wait(min(left, POLL))
                        continue
                yield from pending

        return Response(200, stream=stream())

    def _follow_log(self, request: Request, ns: str, name: str) -> Response:
        if ("pods", ns, name) not in self.store:
            return self._not_found("pods", name)
        stamps = request.param("timestamps") in ("true", "1")
        with self._changed:
            gen = self._generation

        def render(text: str) -> bytes:
            if not stamps:
                return text.encode()
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return "".join(f"{now} {line}" for line in text.splitlines(keepends=True)).encode()

        def stream() -> Iterator[Any]:
            sent = 0
            while not self._stopping.is_set():
                with self._changed:
                    if self._generation != gen:
                        yield DROP
                        return
                    text = self.pod_logs.get((ns, name), "")
                    pod = self.store.get(("pods", ns, name))
                    finished = pod is None or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                    end = len(text) if finished else text.rfind("\n", sent) + 1
                    chunk = text[sent:end] if end > sent else ""
                    sent = max(sent, end)
                    if not chunk:
                        if finished:
                            return
                        self._changed.wait(POLL)
                        continue
                yield render(chunk)

        return Response(200, stream=stream(), headers={"Content-Type": "text/plain"})

    # ---- sending ---------------------------------------------------------------------------------
    def _send(self, h: Any, response: Response) -> None:  # type: ignore[override]
        if response.stream is None:
            return FakeKubernetesAPI._send(h, response)
        h.send_response(response.status)
        h.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()  # the headers now, as the API server does: the client's call returns before any event
        h.close_connection = True
        for chunk in response.stream:
            if chunk is DROP:
                h.wfile.flush()
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if chunk:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


RESOURCE_KINDS = {"jobs": "Job", "pods": "Pod", "secrets": "Secret", "events": "Event"}
RESOURCE_VERSIONS = {"jobs": "batch/v1", "pods": "v1", "secrets": "v1", "events": "v1"}
