"""A webhook receiver for the tests: verifies every Standard Webhooks signature with the specification's
algorithm (written out here, independent of the platform's own code), records what it got, and answers
what the test tells it to (`answer(message_id, attempt) -> status code`, an optional delay)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from functions.dev.local_stack import free_port


def verify_standard_webhook(secret: str, msg_id: str, timestamp: str, body: bytes, signature_header: str, now: float) -> bool:
    """The specification's verification: key = base64 of what follows `whsec_`; signed content
    `{id}.{timestamp}.{body}`; any `v1,<base64 HMAC-SHA256>` in the header; timestamp within 5 minutes."""
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    if abs(now - int(timestamp)) > 300:
        return False
    return any(sig.startswith("v1,") and hmac.compare_digest(sig[3:], expected) for sig in signature_header.split())


@dataclass
class Received:
    msg_id: str
    attempt: int  # how many times this receiver has seen this id, this one included
    status_answered: int
    valid: bool
    body: dict[str, Any]
    at: float

    @property
    def job_id(self) -> str:
        return self.body["data"]["job"]["id"]

    @property
    def status(self) -> str:
        return self.body["type"].removeprefix("job.")


@dataclass
class Receiver:
    secret: str
    answer: Callable[[str, int], int] = lambda msg_id, attempt: 200
    delay: float = 0.0
    got: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                msg_id = self.headers.get("webhook-id", "")
                valid = verify_standard_webhook(
                    receiver.secret, msg_id, self.headers.get("webhook-timestamp", "0"), body, self.headers.get("webhook-signature", ""), time.time()
                )
                with receiver.lock:
                    attempt = 1 + sum(1 for r in receiver.got if r.msg_id == msg_id)
                    code = receiver.answer(msg_id, attempt) if valid else 401
                    receiver.got.append(Received(msg_id, attempt, code, valid, json.loads(body or b"{}"), time.monotonic()))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self, job_id: str | None = None) -> list[Received]:
        """What it answered 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.got if 200 <= r.status_answered < 300 and (job_id is None or r.job_id == job_id)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
