"""The status machine: one table, checked row by row."""

from __future__ import annotations

import pytest

from shared.domain.status import RANK, TERMINAL, TRANSITIONS, JobStatus

S = JobStatus
ALLOWED = [
    (S.QUEUED, S.SUBMITTING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.FAILED),
    (S.SUBMITTING, S.SUBMITTED),
    (S.SUBMITTING, S.RUNNING),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.CANCELLING),
    (S.SUBMITTED, S.RUNNING),
    (S.SUBMITTED, S.SUCCEEDED),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.CANCELLING),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLING),
    (S.CANCELLING, S.CANCELLED),
    (S.CANCELLING, S.SUCCEEDED),
    (S.CANCELLING, S.FAILED),
]
FORBIDDEN = [
    (S.SUCCEEDED, S.RUNNING),
    (S.FAILED, S.SUCCEEDED),
    (S.CANCELLED, S.QUEUED),
    (S.RUNNING, S.SUBMITTED),
    (S.RUNNING, S.QUEUED),
    (S.SUBMITTED, S.QUEUED),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLING),  # a queued job cancels at once
    (S.CANCELLING, S.RUNNING),
    (S.RUNNING, S.RUNNING),
]


@pytest.mark.parametrize("old,new", ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed(old: JobStatus, new: JobStatus) -> None:
    assert old.can_become(new)


@pytest.mark.parametrize("old,new", FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden(old: JobStatus, new: JobStatus) -> None:
    assert not old.can_become(new)


def test_terminal_states_never_change() -> None:
    assert TERMINAL == {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    for status in S:
        assert status.is_terminal() == (status in TERMINAL)
        if status.is_terminal():
            assert TRANSITIONS[status] == frozenset()


def test_table_is_complete_and_never_goes_backwards() -> None:
    assert set(TRANSITIONS) == set(S)
    for old, targets in TRANSITIONS.items():
        for new in targets:
            assert RANK[new] > RANK[old], f"{old}->{new} goes backwards"
