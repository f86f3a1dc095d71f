"""Who may post: the secret URL token, and optional IP and PBX-domain allow lists."""

from __future__ import annotations

import hmac
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


def client_ip(peer: str | None, forwarded_for: str | None, trusted_proxies: list[Network]) -> str:
    """The sender's address. ``X-Forwarded-For`` is believed only when it comes from a
    trusted proxy, and then only up to the first hop that is not itself a trusted proxy."""
    address = peer or ""
    if not forwarded_for or not _in(address, trusted_proxies):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        address = hop
        if not _in(hop, trusted_proxies):
            break
    return address


def ip_allowed(address: str, allowed: list[Network]) -> bool:
    return not allowed or _in(address, allowed)


def domain_allowed(domain: str, allowed: list[str]) -> bool:
    return not allowed or domain.lower() in {d.strip().lower() for d in allowed}
