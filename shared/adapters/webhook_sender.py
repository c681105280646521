"""Outbound webhook POSTs behind the SSRF guard.

Each delivery resolves the host again and checks every address (`shared.domain.ssrf.guard`), then
connects to an address it checked — never resolving twice, so a DNS answer that changes between the
check and the connection (rebinding) can't redirect the call. TLS still verifies the certificate for
the URL's host name (SNI and hostname check use it, not the address). No redirect is followed; each
attempt has one overall deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from shared.domain.ssrf import Checked, guard


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host` (IPv4 and IPv6), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    duration_ms: float
    error: str | None = None
    refused: bool = False  # the SSRF guard refused the URL: nothing was sent


def _pinned_url(url: str, checked: Checked, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    default = 443 if checked.target.scheme == "https" else 80
    netloc = host if checked.target.port == default and parts.port is None else f"{host}:{checked.target.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


class WebhookSender:
    def __init__(
        self,
        *,
        allowed_hosts: frozenset[str],
        timeout_seconds: float = 10.0,
        resolver: Callable[[str, int], list[str]] = resolve,
        transport: httpx.BaseTransport | None = None,
    ):
        self.allowed_hosts = allowed_hosts
        self.timeout = timeout_seconds
        self.resolver = resolver
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, transport=transport)

    def check(self, url: str) -> str | None:
        """Why the URL may not be called (accept-time check), or None."""
        return guard(url, self.allowed_hosts, self.resolver)[1]

    def send(self, url: str, headers: dict[str, str], body: bytes) -> SendResult:
        started = time.monotonic()
        checked, problem = guard(url, self.allowed_hosts, self.resolver)
        if checked is None:
            return SendResult(None, 0.0, f"refused: {problem}", refused=True)
        deadline = started + self.timeout
        error = "no address to connect to"
        for address in checked.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                error = "timed out"
                break
            try:
                resp = self._http.post(
                    _pinned_url(url, checked, address),
                    content=body,
                    headers={**headers, "host": _host_header(checked)},
                    timeout=httpx.Timeout(remaining),
                    extensions={"sni_hostname": checked.target.host},
                )
                resp.close()
                return SendResult(resp.status_code, (time.monotonic() - started) * 1000)
            except httpx.ConnectError as exc:  # try the next address of the host
                error = f"connect failed: {exc}"
            except httpx.TimeoutException:
                error = "timed out"
                break
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
                break
        return SendResult(None, (time.monotonic() - started) * 1000, error[:500])

    def close(self) -> None:
        self._http.close()


def _host_header(checked: Checked) -> str:
    t = checked.target
    host = f"[{t.host}]" if ":" in t.host else t.host
    default = 443 if t.scheme == "https" else 80
    return host if t.port == default else f"{host}:{t.port}"
