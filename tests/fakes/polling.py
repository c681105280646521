"""Poll background work (threads, processes, servers) until a condition holds, with a bound.

One helper for every test that waits on something it can't join: `eventually(pred, timeout, what)`
returns the first truthy value of `pred()`, or fails naming `what` after `timeout` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(pred: Callable[[], T], timeout: float = 30.0, what: str = "condition", *, step: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")
