"""Where a webhook may go: http(s) URLs whose host resolves only to public addresses.

A marketer types the URL, and the server makes the request: an endpoint on 127.0.0.1, a
10.x database or the 169.254.169.254 metadata service would let whoever edits endpoints
reach what only the server can (SSRF). The check runs when an endpoint is saved, for a clear
422, and again on every connection (see transport), since DNS can answer differently later.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from chatman.errors import Invalid

MAX_URL_LENGTH = 2000
ALLOW_HINT = "WEBHOOK_ALLOW_PRIVATE=true allows it, e.g. for a CRM on this network"

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: str) -> str | None:
    """Why a webhook may not go to this IP address ("10.0.0.5, a private address"), or None
    when it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    for kind, test in (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a non-public", not ip.is_global),  # e.g. carrier-grade NAT, 100.64.0.0/10
    ):
        if test:
            return f"{address}, {kind} address"
    return None


def check_url(url: str, field: str = "url") -> SplitResult:
    """The URL's parts, if it is one a webhook can be sent to; raises Invalid naming `field`."""
    if not isinstance(url, str) or not url.strip():
        raise Invalid(field, "an http:// or https:// URL")
    if len(url) > MAX_URL_LENGTH:
        raise Invalid(field, f"at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise Invalid(field, "a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Invalid(field, f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise Invalid(field, f"only http:// and https:// URLs, not {parts.scheme or 'no'} scheme")
    if not parts.hostname:
        raise Invalid(field, "the URL names no host")
    if port == 0:
        raise Invalid(field, "port 0 is no port")
    return parts


def check_target(url: str, allow_private: bool, resolver: Resolver = resolve, field: str = "url") -> None:
    """Refuse (Invalid) a URL a webhook cannot go to: not http(s), or, unless `allow_private`,
    a host that does not resolve or resolves to any address that is not public."""
    parts = check_url(url, field)
    if allow_private:
        return
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as error:
        raise Invalid(field, f"the host {host!r} does not resolve ({error})") from None
    for address in addresses:
        why = refusal(address)
        if why is not None:
            raise Invalid(field, f"the host {host!r} resolves to {why}: refused ({ALLOW_HINT})")
