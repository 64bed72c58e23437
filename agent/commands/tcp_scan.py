"""``kassa-agent detect --host HOST``: a network register listens on one of a few known TCP ports
(specs §1.1, §3.1: Shtrih 7778 and 12345, ATOL 5555). Each becomes a ``socket://`` URL for the
normal detection, likeliest protocol first; a host name that does not resolve is said once, not
once per port."""

from __future__ import annotations

import socket

KNOWN_TCP_PORTS: dict[int, str] = {7778: "shtrih", 12345: "shtrih", 5555: "atol"}  # port → likeliest protocol


class UnknownHost(Exception):
    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"the host name {host!r} does not resolve")

    hint = "check its spelling, or give the register's IP address (e.g. --host 192.168.1.50)"


def check_host(host: str) -> None:
    """Raise ``UnknownHost`` unless ``host`` is an address or a name that resolves."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnknownHost(host) from None


def host_urls(host: str) -> list[str]:
    """``socket://`` URLs of every known register port on ``host`` (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return [f"socket://{shown}:{port}" for port in KNOWN_TCP_PORTS]


def likeliest_first(url: str, protocols: list[str]) -> list[str]:
    """``protocols`` with the one usual on the URL's TCP port (if any) first."""
    if not url.lower().startswith("socket://"):
        return protocols
    port = url.rsplit(":", 1)[-1]
    first = KNOWN_TCP_PORTS.get(int(port)) if port.isdigit() else None
    return sorted(protocols, key=lambda p: p != first)
