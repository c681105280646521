"""The SSRF guard, pure: which URLs chosen by callers the platform may call, and which addresses.

The platform POSTs to URLs that callers choose (webhooks, the studio's callbacks). A URL must be
`https://` unless its host is allowed by setting, carry no credentials, and every address its host
resolves to must be public: loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 — the
metadata server — and fe80::/10), CGNAT 100.64.0.0/10, 0.0.0.0/8, multicast, reserved and the
IPv4-mapped forms of all of them are refused unless the host is allowed. Resolution is I/O and happens
in the delivery adapter, which checks again at each delivery (DNS rebinding) and connects to the very
address it checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

_REFUSED_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
]
_REFUSED_V6 = [ipaddress.ip_network(n) for n in ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "2001:db8::/32", "100::/64")]


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, without brackets
    port: int
    allowed: bool  # the host is in the allow list: plain http and any address are accepted


def address_problem(address: str) -> str | None:
    """Why the platform may not call this address, or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if mapped is not None:
            return address_problem(str(mapped))
        if any(ip in net for net in _REFUSED_V6):
            return f"{ip} is a loopback, private, link-local, multicast or reserved address"
        return None
    if any(ip in net for net in _REFUSED_V4):
        return f"{ip} is a loopback, private, link-local, CGNAT, multicast or reserved address"
    return None


def parse_target(url: str, allowed_hosts: frozenset[str]) -> tuple[Target | None, str | None]:
    """Check a URL's shape (not its addresses): (target, None) or (None, why it is refused)."""
    if not isinstance(url, str) or not url:
        return None, "must be a URL"
    if len(url) > MAX_URL_LENGTH:
        return None, f"must be at most {MAX_URL_LENGTH} characters"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return None, "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, "is not a valid URL"
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http"):
        return None, "must be an https:// URL"
    if not host:
        return None, "must name a host"
    if parts.username is not None or parts.password is not None:
        return None, "must not carry credentials (user:password@)"
    allowed = host in allowed_hosts
    if scheme == "http" and not allowed:
        return None, "must be https:// (plain http only for hosts in WEBHOOK_ALLOWED_HOSTS)"
    return Target(scheme, host, port or (443 if scheme == "https" else 80), allowed), None


def literal_address(host: str) -> str | None:
    """The host itself when it is an IP literal (including the decimal and short forms `inet_aton`
    would accept, which are a classic way around naive checks), else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    parts = host.split(".")
    if 1 <= len(parts) <= 4 and all(_number(p) is not None for p in parts):
        values = [_number(p) or 0 for p in parts]
        *head, last = values
        if any(v > 255 for v in head) or last >= 256 ** (5 - len(parts)):
            return None
        n = 0
        for v in head:
            n = n * 256 + v
        n = n * 256 ** (5 - len(parts)) + last
        return str(ipaddress.IPv4Address(n)) if n < 2**32 else None
    return None


def _number(part: str) -> int | None:
    """One part of an IPv4 address as inet_aton reads it: 0x.. hex, 0.. octal, else decimal."""
    p = part.lower()
    try:
        if p.startswith("0x"):
            return int(p[2:], 16) if len(p) > 2 else None
        if len(p) > 1 and p.startswith("0"):
            return int(p[1:], 8)
        return int(p) if p.isdigit() else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Checked:
    target: Target
    addresses: tuple[str, ...]  # every address the host resolved to, all of them allowed


Resolve = Callable[[str, int], "list[str]"]


def guard(url: str, allowed_hosts: frozenset[str], resolve: Resolve) -> tuple[Checked | None, str | None]:
    """The whole check: the URL's shape, then every address its host resolves to (an IP literal is its
    own address). `resolve` is the caller's DNS lookup; it may raise OSError (unresolvable: refused)."""
    target, problem = parse_target(url, allowed_hosts)
    if target is None:
        return None, problem
    literal = literal_address(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = list(dict.fromkeys(resolve(target.host, target.port)))
        except OSError as exc:
            return None, f"host {target.host} does not resolve ({exc.__class__.__name__})"
        if not addresses:
            return None, f"host {target.host} does not resolve"
    if not target.allowed:
        for address in addresses:
            why = address_problem(address)
            if why is not None:
                return None, f"{target.host} resolves to {why} (allow the host with WEBHOOK_ALLOWED_HOSTS)"
    return Checked(target, tuple(addresses)), None
