"""Load generation for the benchmarks: wrk when installed (Debian package `wrk`), else a Python client.

Both report requests/s and latency percentiles; each benchmark runs its subject and its reference with
the same generator in the same run, and reports the ratio.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str

    def row(self) -> dict:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
            "tool": self.tool,
        }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    seconds: int = 10,
    connections: int = 16,
    threads: int = 1,
) -> LoadResult:
    script = f"wrk.method = {json.dumps(method)}\n"
    if body is not None:
        script += f"wrk.body = {json.dumps(body.decode())}\n"
    for k, v in (headers or {}).items():
        script += f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
    # Count non-2xx answers as errors.
    script += "done = function(summary, latency, requests) end\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return LoadResult(rps, p50, p99, total, errors, "wrk")


def python_load(
    url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None, seconds: int = 10, connections: int = 8
) -> LoadResult:
    host, _, rest = url.removeprefix("http://").partition("/")
    hostname, _, port = host.partition(":")
    path = "/" + rest
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(hostname, int(port), timeout=30)
        local: list[float] = []
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    errors[0] += 1
            except Exception:  # noqa: BLE001
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(hostname, int(port), timeout=30)
            local.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return LoadResult(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, len(latencies), errors[0], "python")


def load(url: str, **kw) -> LoadResult:
    if shutil.which("wrk"):
        kw.pop("connections_python", None)
        return wrk(url, **kw)
    kw.pop("threads", None)
    return python_load(url, **kw)


def sample_latency(url: str, n: int = 200, warmup: int = 20) -> float:
    """p50 in ms of n sequential GETs over one keep-alive connection (first-page latency)."""
    host = url.removeprefix("http://").split("/")[0]
    path = "/" + url.removeprefix("http://").partition("/")[2]
    hostname, _, port = host.partition(":")
    conn = http.client.HTTPConnection(hostname, int(port), timeout=30)
    times = []
    for i in range(n + warmup):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    conn.close()
    return statistics.median(times) * 1000
