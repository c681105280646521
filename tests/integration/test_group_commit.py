"""`POST /train` through the ASGI adapter's group commit (functions/http/asgi.py `GroupCommit`, `Api.handle_async`),
driven in-process on one event loop with a fake ASGI scope / receive / send.

- Concurrent requests share commits (`create_many`), each still gets its own job and its own answer.
- Idempotency-Key inside one batch behaves as one request after the other: same body -> the same job,
  published once; another body -> 409.
- A publish that fails answers 503 JSON and marks the job failed (PublishFailed), as the Flask path does.
- The follow-up (`then`: the launch is published) runs for every stored item, even when the request that
  queued it is cancelled meanwhile; a store failure answers 503 for its batch and the next batch works.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.http.asgi import AsgiApi
from functions.http.wire import Request
from shared.domain.status import JobStatus
from shared.errors import TransientError
from shared.ports import JobQuery
from tests.integration.conftest import make_container

BODY = {"dataset_file": "gs://b/d.jsonl", "output_dir": "/o"}


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


async def call(app: AsgiApi, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": header_list, "query_string": b""}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return Reply(start["status"], hdrs, b"".join(m.get("body", b"") for m in sent[1:]))


def train(app: AsgiApi, body: Any = None, key: str | None = None):
    return call(app, "POST", "/train", BODY if body is None else body, {"Idempotency-Key": key} if key else None)


class Stack:
    def __init__(self, tmp_path: Path):
        self.bus, self.container = make_container(tmp_path)
        self.app = AsgiApi(self.container.api)

    @property
    def store(self):
        return self.container.store

    def stored(self) -> list:
        return self.store.list(JobQuery(limit=500)).items

    def launches(self) -> list[str]:
        return [data["job_id"] for topic, data, _, _ in self.bus.messages if data.get("op") == "submit"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.app.close()


class GatedStore:
    """Wraps the store's `create_many`: waits for `gate` (set from the test) and can fail once."""

    def __init__(self, store: Any):
        self.store = store
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_next: BaseException | None = None
        self.calls: list[int] = []

    def create_many(self, items):
        self.calls.append(len(items))
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return self.store.create_many(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_concurrent_requests_share_commits(stack: Stack) -> None:
    async def main() -> list[Reply]:
        return await asyncio.gather(*[train(stack.app, {**BODY, "job_name": f"j{i}"}) for i in range(50)])

    replies = asyncio.run(main())
    assert [r.status for r in replies] == [202] * 50
    ids = [r.json()["job"]["id"] for r in replies]
    assert len(set(ids)) == 50
    assert [r.json()["job"]["name"] for r in replies] == [f"j{i}" for i in range(50)]  # each its own answer
    assert all(r.headers["location"] == f"/jobs/{job_id}" and "idempotent-replayed" not in r.headers for r, job_id in zip(replies, ids))
    stored = {j.id: j for j in stack.stored()}
    assert set(stored) == set(ids) and all(j.status is JobStatus.QUEUED and j.version == 1 for j in stored.values())
    assert sorted(stack.launches()) == sorted(ids)  # each published once
    gc = stack.app.group_commit
    assert gc.items == 50
    assert 1 <= gc.batches < 50


def test_requests_arriving_during_a_commit_form_the_next_batch(stack: Stack) -> None:
    gated = GatedStore(stack.store)
    stack.app.group_commit.store = gated

    async def main() -> list[Reply]:
        first = [asyncio.ensure_future(train(stack.app)) for _ in range(5)]
        await until(gated.entered.is_set)  # the first batch is being written
        second = [asyncio.ensure_future(train(stack.app)) for _ in range(10)]
        await asyncio.sleep(0.05)
        gated.gate.set()
        return await asyncio.gather(*first, *second)

    replies = asyncio.run(main())
    assert [r.status for r in replies] == [202] * 15
    assert gated.calls == [5, 10]
    assert stack.app.group_commit.batches == 2 and len(stack.stored()) == 15


def test_idempotency_key_replayed_inside_one_batch(stack: Stack) -> None:
    async def main() -> list[Reply]:
        return await asyncio.gather(train(stack.app, key="k-1"), train(stack.app, key="k-1"))

    a, b = asyncio.run(main())
    assert stack.app.group_commit.batches == 1  # both in one commit
    assert (a.status, b.status) == (202, 202)
    assert a.json()["job"]["id"] == b.json()["job"]["id"]
    assert "idempotent-replayed" not in a.headers and b.headers["idempotent-replayed"] == "true"
    assert len(stack.stored()) == 1
    assert stack.launches() == [a.json()["job"]["id"]]  # published once


def test_idempotency_key_with_another_body_inside_one_batch(stack: Stack) -> None:
    async def main() -> list[Reply]:
        return await asyncio.gather(train(stack.app, key="k-2"), train(stack.app, {**BODY, "job_name": "other"}, key="k-2"))

    a, b = asyncio.run(main())
    assert stack.app.group_commit.batches == 1
    assert a.status == 202
    assert b.status == 409 and "Idempotency-Key" in b.json()["error"]
    assert b.headers["content-type"].startswith("application/json")
    assert [j.id for j in stack.stored()] == [a.json()["job"]["id"]]
    assert len(stack.launches()) == 1


def test_publish_failure_is_503_and_the_job_failed_as_on_flask(stack: Stack) -> None:
    stack.bus.fail = True

    async def main() -> list[Reply]:
        return await asyncio.gather(train(stack.app), train(stack.app, {**BODY, "job_name": "second"}))

    replies = asyncio.run(main())
    for reply in replies:
        assert reply.status == 503 and reply.headers["retry-after"] == "1"
        body = reply.json()
        assert "could not be queued" in body["error"]
        assert body["job"]["status"] == "failed" and body["job"]["statusReason"] == "PublishFailed"
        job = stack.store.get(body["job"]["id"])
        assert job.status is JobStatus.FAILED and job.status_reason == "PublishFailed" and "bus down" in job.error
    # The Flask path answers the same.
    raw = json.dumps(BODY).encode()
    flask_like = stack.container.api.handle(Request("POST", "/train", _Lookup({"content-type": "application/json"}), _Lookup({}), len(raw), lambda n: raw[:n]))
    flask_body = json.loads(flask_like.body)
    assert flask_like.status == 503 and flask_like.headers.get("Retry-After") == "1"
    assert set(flask_body) == set(replies[0].json()) and flask_body["error"] == replies[0].json()["error"]
    assert flask_body["job"]["statusReason"] == "PublishFailed"


def test_the_launch_is_published_even_if_the_request_is_cancelled(stack: Stack) -> None:
    gated = GatedStore(stack.store)
    stack.app.group_commit.store = gated

    async def main() -> Reply:
        task = asyncio.ensure_future(train(stack.app, {**BODY, "job_name": "orphan"}))
        await until(gated.entered.is_set)  # its item is queued and being written
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gated.gate.set()
        await until(lambda: len(stack.bus.messages) == 1)
        # The group commit is not stuck: a later request is stored and answered.
        return await train(stack.app, {**BODY, "job_name": "after"})

    after = asyncio.run(main())
    assert after.status == 202
    names = {j.name: j for j in stack.stored()}
    assert set(names) == {"orphan", "after"}
    assert stack.launches() == [names["orphan"].id, names["after"].id]


def test_a_store_failure_answers_its_batch_and_the_next_batch_works(stack: Stack) -> None:
    gated = GatedStore(stack.store)
    gated.fail_next = TransientError("disk busy")
    gated.gate.set()
    stack.app.group_commit.store = gated

    async def main() -> tuple[list[Reply], Reply]:
        failed = await asyncio.gather(train(stack.app), train(stack.app))
        return failed, await train(stack.app)

    failed, ok = asyncio.run(main())
    assert [r.status for r in failed] == [503, 503]
    assert all(r.json()["error"].startswith("The service is temporarily unavailable") for r in failed)
    assert ok.status == 202
    assert [j.id for j in stack.stored()] == [ok.json()["job"]["id"]]
    assert stack.launches() == [ok.json()["job"]["id"]]


def test_other_routes_and_validation_do_not_go_through_the_group_commit(stack: Stack) -> None:
    async def main() -> tuple[Reply, Reply, Reply]:
        bad = await train(stack.app, {"output_dir": "/o"})
        created = await train(stack.app)
        got = await call(stack.app, "GET", f"/jobs/{created.json()['job']['id']}")
        return bad, created, got

    bad, created, got = asyncio.run(main())
    assert bad.status == 400 and any(e["field"] == "dataset_file" for e in bad.json()["errors"])
    assert created.status == 202 and got.status == 200 and got.json()["job"]["id"] == created.json()["job"]["id"]
    assert stack.app.group_commit.items == 1


class _Lookup(dict):
    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)
