"""Who may post: the secret URL token, and optional IP and PBX-domain allow lists."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


def token_ok(given: str, expected: str) -> bool:
    """Constant-time: the answer takes as long for a near miss as for garbage."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _host(hop: str) -> str:
    """A hop without its port: ``1.2.3.4:5678`` → ``1.2.3.4``, ``[::1]:443`` → ``::1``."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has several colons)
        return hop.partition(":")[0]
    return hop


def client_ip(
    peer: str | None, forwarded_for: str | Sequence[str] | None, trusted_proxies: list[Network]
) -> str:
    """The sender's address. ``X-Forwarded-For`` is believed only when it comes from a
    trusted proxy, and then only up to the first hop that is not itself a trusted proxy.

    Every ``X-Forwarded-For`` line counts, in order, as one list (RFC 9110 §5.3): a proxy
    that adds its own line below a client's must not let the client's line choose the
    address."""
    address = peer or ""
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for or ())
    if not lines or not _in(address, trusted_proxies):
        return address
    hops = [_host(h) for line in lines for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        address = hop
        if not _in(hop, trusted_proxies):
            break
    return address


def ip_allowed(address: str, allowed: list[Network]) -> bool:
    return not allowed or _in(address, allowed)


def domain_allowed(domain: str, allowed: list[str]) -> bool:
    return not allowed or domain.lower() in {d.strip().lower() for d in allowed}
