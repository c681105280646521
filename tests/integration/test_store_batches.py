"""JobStore.create_many / update_many: the batch forms of create / update, on both stores.

Runs against SQLite (one transaction, executemany, falling back to one item at a time on a conflicting
id or a lost compare-and-set) and Firestore on the real emulator (a loop over create / update), through
the `store` fixture of the store contract suite. Whatever a store does underneath, each item's outcome
must be what `create` / `update` would have given for it, one after another.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.domain.job import Job
from shared.domain.status import JobStatus
from shared.errors import Conflict
from shared.ports import IdempotentCreate
from tests.fakes.jobs import make_job


def created(outcome: Any) -> Job:
    assert isinstance(outcome, IdempotentCreate), outcome
    assert outcome.created is True
    assert outcome.job.version == 1
    return outcome.job


def replayed(outcome: Any) -> Job:
    assert isinstance(outcome, IdempotentCreate), outcome
    assert outcome.created is False
    return outcome.job


# ---- create_many -----------------------------------------------------------------------------------


def test_create_many_empty(store) -> None:
    assert store.create_many([]) == []


def test_create_many_stores_every_item_in_order(store) -> None:
    jobs = [make_job(i) for i in range(5)]
    out = store.create_many([(job, None) for job in jobs])
    assert [created(o).id for o in out] == [j.id for j in jobs]
    for job, outcome in zip(jobs, out):
        assert outcome.job == job.replace(version=1, event_count=1)
        assert store.get(job.id) == job.replace(version=1, event_count=1)


def test_create_many_key_repeated_inside_the_batch(store) -> None:
    first = make_job(1, request_hash="same")
    twin = make_job(2, request_hash="same")  # same key, same body: the first job, not a new one
    other = make_job(3, request_hash="different")  # same key, another body: Conflict for this item only
    free = make_job(4)
    out = store.create_many([(first, "k"), (twin, "k"), (other, "k"), (free, "k4")])
    assert len(out) == 4
    assert created(out[0]).id == first.id
    assert replayed(out[1]) == first.replace(version=1, event_count=1)
    assert isinstance(out[2], Conflict) and "Idempotency-Key" in str(out[2])
    assert created(out[3]).id == free.id
    assert store.get(twin.id) is None and store.get(other.id) is None
    assert store.get(first.id) is not None and store.get(free.id) is not None
    # The key is bound to the first job afterwards, exactly as after two `create` calls.
    assert store.create(make_job(5, request_hash="same"), "k") == IdempotentCreate(first.replace(version=1, event_count=1), created=False)


def test_create_many_key_used_before_the_batch(store) -> None:
    first = created(store.create(make_job(1, request_hash="h"), "k"))
    out = store.create_many([(make_job(2, request_hash="h"), "k"), (make_job(3, request_hash="x"), "k"), (make_job(4), None)])
    assert replayed(out[0]) == first
    assert isinstance(out[1], Conflict)
    assert created(out[2]).id == "job-00004"
    assert store.get("job-00002") is None and store.get("job-00003") is None


def test_create_many_existing_id_is_a_conflict_for_that_item_only(store) -> None:
    store.create(make_job(1))
    out = store.create_many([(make_job(2), "a"), (make_job(1, request_hash="again"), "b"), (make_job(3), None)])
    assert created(out[0]).id == "job-00002"
    assert isinstance(out[1], Conflict) and "job-00001" in str(out[1])
    assert created(out[2]).id == "job-00003"
    assert store.get("job-00001").request_hash == "h1"  # untouched
    assert store.get("job-00002") is not None and store.get("job-00003") is not None
    # The committed item's key is recorded; the refused item's key is not.
    assert replayed(store.create(make_job(9, request_hash="h2"), "a")).id == "job-00002"
    assert created(store.create(make_job(10, request_hash="again"), "b")).id == "job-00010"


def test_create_many_id_repeated_inside_the_batch(store) -> None:
    out = store.create_many([(make_job(7), None), (make_job(7, request_hash="second"), None), (make_job(8), None)])
    assert created(out[0]).request_hash == "h7"
    assert isinstance(out[1], Conflict)
    assert created(out[2]).id == "job-00008"
    assert store.get("job-00007").request_hash == "h7"


def test_create_many_equals_create_one_by_one(store, tmp_path) -> None:
    """The same sequence, once through create_many and once through create on a fresh SQLite store: the
    same outcome, item by item (ids are prefixed in the second so both sequences can share the store)."""
    from shared.adapters.sqlite_store import SqliteJobStore

    def items(prefix: str) -> list[tuple[Job, str | None]]:
        def job(i: int, h: str) -> Job:
            return make_job(i, id=f"{prefix}{i}", request_hash=h)

        return [
            (job(1, "a"), f"{prefix}k1"),
            (job(2, "a"), f"{prefix}k1"),
            (job(3, "b"), f"{prefix}k1"),
            (job(1, "c"), f"{prefix}k2"),  # the id of item 0 again
            (job(4, "c"), f"{prefix}k2"),  # k2 was not recorded by the refused item
            (job(5, "d"), None),
        ]

    def shape(outcome: Any) -> tuple:
        if isinstance(outcome, Exception):
            return (type(outcome).__name__,)
        return (outcome.created, outcome.job.id.split("-")[-1], outcome.job.request_hash)

    batch = [shape(o) for o in store.create_many(items("m-"))]
    reference = SqliteJobStore(tmp_path / "reference.db")
    one_by_one = []
    for job, key in items("m-"):
        try:
            one_by_one.append(shape(reference.create(job, key)))
        except Conflict as exc:
            one_by_one.append(shape(exc))
    reference.close()
    assert (
        batch
        == one_by_one
        == [
            (True, "1", "a"),
            (False, "1", "a"),
            ("Conflict",),
            ("Conflict",),
            (True, "4", "c"),
            (True, "5", "d"),
        ]
    )


def test_create_many_matches_create_without_a_request_hash(store) -> None:
    store.create(make_job(1, request_hash=None), "k")
    try:
        alone: Any = store.create(make_job(2, request_hash=None), "k")
    except Conflict as exc:
        alone = exc
    batched = store.create_many([(make_job(3, request_hash=None), "k")])[0]
    assert type(batched) is type(alone)


# ---- update_many -----------------------------------------------------------------------------------


def to_submitting(job: Job) -> Job | None:
    if job.status is JobStatus.QUEUED:
        return job.replace(status=JobStatus.SUBMITTING)
    return None


def test_update_many_empty(store) -> None:
    assert store.update_many({}) == {}


def test_update_many_equals_update_per_job(store) -> None:
    for i in range(1, 4):
        store.create(make_job(i))
    j3 = store.get("job-00003")
    out = store.update_many(
        {
            "job-00001": to_submitting,  # written
            "missing": to_submitting,  # no such job: None
            "job-00002": lambda job: None,  # left as is
            "job-00003": lambda job: job.replace(),  # an equal job: left as is, no version bump
        }
    )
    assert list(out) == ["job-00001", "missing", "job-00002", "job-00003"]  # every id given, in order
    assert out["missing"] is None
    assert out["job-00001"].status is JobStatus.SUBMITTING and out["job-00001"].version == 2
    assert out["job-00002"] == store.get("job-00002") and out["job-00002"].version == 1
    assert out["job-00003"] == j3 and store.get("job-00003").version == 1
    assert store.get("job-00001") == out["job-00001"]
    assert store.get("missing") is None


def test_update_many_bumps_each_version_once(store) -> None:
    ids = [created(o).id for o in store.create_many([(make_job(i), None) for i in range(4)])]
    known = {job_id: store.get(job_id) for job_id in ids}
    out = store.update_many({job_id: to_submitting for job_id in ids}, known=known)
    assert {job_id: (job.status, job.version) for job_id, job in out.items()} == {job_id: (JobStatus.SUBMITTING, 2) for job_id in ids}
    assert all(store.get(job_id) == out[job_id] for job_id in ids)
    # Again: the mutation now leaves them as they are.
    again = store.update_many({job_id: to_submitting for job_id in ids})
    assert all(job.version == 2 for job in again.values())


def test_update_many_with_a_stale_known_job_rereads_it(store) -> None:
    store.create(make_job(1))
    store.create(make_job(2))
    known = {"job-00001": store.get("job-00001"), "job-00002": store.get("job-00002")}
    # Someone else writes job 1 after the caller read it.
    store.update("job-00001", lambda job: job.replace(labels={**job.labels, "by": "other"}))
    seen: list[tuple[str, int]] = []

    def mutate(job: Job) -> Job | None:
        seen.append((job.id, job.version))
        return job.replace(status=JobStatus.SUBMITTING)

    out = store.update_many({"job-00001": mutate, "job-00002": mutate}, known=known)
    one = store.get("job-00001")
    # Neither write is lost: the other writer's label and this status, one version each.
    assert one.labels == {"team": "a", "by": "other"} and one.status is JobStatus.SUBMITTING and one.version == 3
    assert out["job-00001"] == one
    assert out["job-00002"] == store.get("job-00002") and out["job-00002"].version == 2
    assert ("job-00001", 2) in seen  # the mutation was decided again on the job as it now is


def test_update_many_with_a_stale_known_job_that_it_leaves_alone(store) -> None:
    store.create(make_job(1))
    store.create(make_job(2))
    known = {"job-00001": store.get("job-00001"), "job-00002": store.get("job-00002")}
    store.update("job-00001", lambda job: job.replace(status=JobStatus.SUBMITTING))
    out = store.update_many({"job-00001": lambda job: None, "job-00002": lambda job: None}, known=known)
    # `update` would return the job as stored: version 2, submitting.
    assert out["job-00001"] == store.get("job-00001")


def test_update_many_ignores_known_jobs_it_was_not_asked_to_update(store) -> None:
    store.create(make_job(1))
    store.create(make_job(2))
    known = {"job-00001": store.get("job-00001"), "job-00002": store.get("job-00002")}
    out = store.update_many({"job-00001": to_submitting}, known=known)
    assert list(out) == ["job-00001"] and out["job-00001"].version == 2
    assert store.get("job-00002").version == 1 and store.get("job-00002").status is JobStatus.QUEUED


def test_update_many_propagates_what_a_mutation_raises(store) -> None:
    store.create(make_job(1))
    store.create(make_job(2))

    def refuse(job: Job) -> Job | None:
        raise Conflict(f"job {job.id} can't be changed")

    with pytest.raises(Conflict):  # as `update` does
        store.update("job-00002", refuse)
    with pytest.raises(Conflict, match="job-00002"):
        store.update_many({"job-00001": to_submitting, "job-00002": refuse})
    assert store.get("job-00002").version == 1 and store.get("job-00002").status is JobStatus.QUEUED
    # The store is still usable afterwards (no transaction or lock left behind).
    assert store.update_many({"job-00002": to_submitting, "job-00001": to_submitting})["job-00002"].status is JobStatus.SUBMITTING


def test_update_many_concurrent_with_update_loses_no_write(store) -> None:
    ids = ["job-00001", "job-00002"]
    for i in (1, 2):
        store.create(make_job(i, progress={"n": 0}))
    rounds = 5 if store.kind == "firestore" else 20

    def bump(job: Job) -> Job:
        return job.replace(progress={"n": job.progress["n"] + 1})

    errors: list[BaseException] = []

    def batched() -> None:
        try:
            for _ in range(rounds):
                known = {job_id: store.get(job_id) for job_id in ids}  # often stale by the time it writes
                store.update_many({job_id: bump for job_id in ids}, known=known)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def single() -> None:
        try:
            for _ in range(rounds):
                for job_id in ids:
                    store.update(job_id, bump)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=batched), threading.Thread(target=batched), threading.Thread(target=single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for job_id in ids:
        job = store.get(job_id)
        assert job.progress["n"] == 3 * rounds
        assert job.version == 1 + 3 * rounds  # one version per write, none counted twice
