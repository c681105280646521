"""The SSRF guard: one row per URL (a name per row), with a fake resolver (no DNS)."""

from __future__ import annotations

import pytest

from shared.domain.ssrf import address_problem, guard

DNS = {
    "hooks.example.com": ["93.184.216.34"],
    "dual.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
    "rebind.example.com": ["93.184.216.34", "10.1.2.3"],  # one bad address is enough to refuse
    "metadata.example.com": ["169.254.169.254"],
    "internal.example.com": ["192.168.1.10"],
    "v6local.example.com": ["fd00::1"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "receiver.test": ["127.0.0.1"],  # allowed by setting below
}
ALLOWED = frozenset({"receiver.test"})


def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("NXDOMAIN")
    return DNS[host]


CASES = [
    ("public https", "https://hooks.example.com/x", True),
    ("public https with port and query", "https://hooks.example.com:8443/x?y=1", True),
    ("public v4 and v6", "https://dual.example.com/", True),
    ("public IP literal", "https://93.184.216.34/hook", True),
    ("allowed host over http to loopback", "http://receiver.test:8080/hook", True),
    ("plain http refused", "http://hooks.example.com/x", False),
    ("ftp refused", "ftp://hooks.example.com/x", False),
    ("javascript refused", "javascript:alert(1)", False),
    ("no host", "https:///x", False),
    ("credentials", "https://user:pw@hooks.example.com/", False),
    ("loopback literal", "https://127.0.0.1/", False),
    ("loopback decimal", "https://2130706433/", False),
    ("loopback hex", "https://0x7f.0.0.1/", False),
    ("loopback octal", "https://0177.0.0.1/", False),
    ("loopback short", "https://127.1/", False),
    ("localhost name", "https://localhost/", False),
    ("ipv6 loopback", "https://[::1]/", False),
    ("ipv4-mapped loopback", "https://[::ffff:127.0.0.1]/", False),
    ("mapped via DNS", "https://mapped.example.com/", False),
    ("metadata server literal", "https://169.254.169.254/computeMetadata/v1/", False),
    ("metadata via DNS", "https://metadata.example.com/", False),
    ("RFC 1918 10/8", "https://10.0.0.5/", False),
    ("RFC 1918 172.16/12", "https://172.20.1.1/", False),
    ("RFC 1918 via DNS", "https://internal.example.com/", False),
    ("CGNAT", "https://100.64.0.1/", False),
    ("zero network", "https://0.0.0.0/", False),
    ("multicast", "https://224.0.0.1/", False),
    ("unique local v6", "https://v6local.example.com/", False),
    ("link-local v6", "https://[fe80::1]/", False),
    ("DNS rebinding: one private answer", "https://rebind.example.com/", False),
    ("unresolvable", "https://nope.example.com/", False),
    ("space in URL", "https://hooks.example.com/a b", False),
    ("over-long", "https://hooks.example.com/" + "a" * 3000, False),
    ("bad port", "https://hooks.example.com:99999/", False),
]


@pytest.mark.parametrize("url,ok", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_guard(url: str, ok: bool) -> None:
    checked, problem = guard(url, ALLOWED, resolve)
    assert (checked is not None) is ok, problem
    assert (problem is None) is ok
    if ok:
        assert checked.addresses and all(address_problem(a) is None or checked.target.allowed for a in checked.addresses)


def test_localhost_resolution_is_refused_as_loopback() -> None:
    checked, problem = guard("https://localhost/", frozenset(), lambda h, p: ["127.0.0.1", "::1"])
    assert checked is None and "loopback" in problem
