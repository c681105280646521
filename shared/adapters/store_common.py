"""What both job stores (SQLite, Firestore) do alike around the lifecycle plan, in one place.

Each store commits a write its own way (SQLite: `UPDATE ... WHERE version = ?` in one transaction;
Firestore: a batch with the update-time precondition), but what it commits is planned here, the same
for both: a new job is planned with `shared.domain.lifecycle.plan(None, ...)` as the api's and stored at
version 1; a write of an existing job is the plan of the writer's decision, at the next version, or
nothing at all. `PlannedWrites` gives both stores the `JobStore` methods that are only `apply` in
another form (`update`, `append_event`); the stored shapes are in `records.py`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from shared.adapters.records import decode_cursor
from shared.domain.job import Job
from shared.domain.lifecycle import Change, Plan, TimelineEvent, as_change, plan
from shared.errors import FieldError, ValidationFailed
from shared.ports import LogMutation, Mutation


def plan_create(job: Job) -> Plan:
    """The write of a new job (its first timeline entry and notification, the api's), at version 1."""
    planned = plan(None, Change(job, source="api"))
    assert planned.job is not None  # a new job always plans a write
    return dataclasses.replace(planned, job=planned.job.replace(version=1))


def plan_write(current: Job, decide: LogMutation | Mutation, max_tail_chars: int = -1) -> Plan | None:
    """The write of `decide`'s change over `current`, its job at the next version; None: nothing changes
    (no write at all)."""
    planned = plan(current, as_change(decide(current)), max_tail_chars)
    if planned.job is None:
        return None
    return dataclasses.replace(planned, job=planned.job.replace(version=current.version + 1))


def written(planned: Plan) -> Job:
    """The job a plan from `plan_create` / `plan_write` writes (never None there)."""
    assert planned.job is not None  # only plans that write reach a store's commit
    return planned.job


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """A list cursor this service returned, as (created at, job id); anything else is a 400 on `cursor`."""
    try:
        return decode_cursor(cursor)
    except ValueError:
        raise ValidationFailed([FieldError("cursor", "is not a cursor this service returned")]) from None


class PlannedWrites:
    """The `JobStore` writes that are `apply` in another form; a store that mixes this in defines `apply`."""

    def apply(self, job_id: str, decide: LogMutation, max_tail_chars: int) -> Job | None:
        raise NotImplementedError

    def update(self, job_id: str, mutate: Mutation) -> Job | None:
        return self.apply(job_id, mutate, -1)

    def append_event(self, job_id: str, event: TimelineEvent) -> None:
        self.apply(job_id, lambda current: (None, (), (event,)), -1)
