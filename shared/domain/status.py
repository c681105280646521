"""The job status machine: one enum, one transition table.

```
            ┌────────────► cancelled ◄──────────── cancelling ◄── (any non-terminal but queued)
            │                                          │
 queued ──► submitting ──► submitted ──► running ──► succeeded
   │            │              │            │
   └────────────┴──────────────┴────────────┴──────► failed
```
`submitted` means the platform has the job but nothing runs yet (pending pods, image pull, Vertex
`JOB_STATE_PENDING`); a dry run (`K8S_APPLY=0` / `VERTEX_SUBMIT=0`) stops there for good and says so in
`statusReason`. A job in `cancelling` may still end `succeeded` or `failed` if the backend finished
first: the truth wins. Terminal states never change, and the table only goes forward (`can_become`).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        """The status can never change again (succeeded, failed, cancelled). Whether anything more will
        happen to a job is `Job.is_final` (a dry run also ends, at `submitted`, a non-terminal status)."""
        return self in TERMINAL

    def can_become(self, new: JobStatus) -> bool:
        """True when `self -> new` is a transition in the table (a status never 'transitions' to itself)."""
        return new in TRANSITIONS[self]


class FailureClass(StrEnum):
    USER = "user"  # bad data, bad flags, image that does not exist: the user must change something
    INFRA = "infra"  # the platform broke (API errors, node failures)
    CAPACITY = "capacity"  # no GPUs to be had
    QUOTA = "quota"  # a quota was exceeded
    PREEMPTED = "preempted"  # the machine was taken back (spot, eviction, SIGTERM)


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

_S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.QUEUED: frozenset({_S.SUBMITTING, _S.CANCELLED, _S.FAILED}),
    # Backend events may overtake the launcher's own "submitted" write, so a submitting job may move on.
    _S.SUBMITTING: frozenset({_S.SUBMITTED, _S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLING}),
    _S.SUBMITTED: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLING}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLING}),
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.SUCCEEDED, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}

# How far along the lifecycle each status is: every transition of the table goes up in it (checked by
# tests/unit/test_status.py), which is why nothing moves a job backwards. Only job statuses: the
# watcher orders Kubernetes state words with its own `STATE_ORDER`.
RANK: dict[JobStatus, int] = {
    _S.QUEUED: 0,
    _S.SUBMITTING: 1,
    _S.SUBMITTED: 2,
    _S.RUNNING: 3,
    _S.CANCELLING: 4,
    _S.SUCCEEDED: 5,
    _S.FAILED: 5,
    _S.CANCELLED: 5,
}
