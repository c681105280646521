"""The README's tiny chat rows and a poll of a job until a condition holds, for the e2e tests."""

from __future__ import annotations

import json
import time

import requests

CHAT = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a + b}"}]} for a in range(6) for b in range(4)]


def wait_for(url: str, job_id: str, pred, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/jobs/{job_id}", params={"logs_limit": 1}).json()["job"]
        if pred(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"timed out; last state: {json.dumps({k: job.get(k) for k in ('status', 'statusReason', 'error', 'logTail')})}")
