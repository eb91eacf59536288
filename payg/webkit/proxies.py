"""The client's real address behind a reverse proxy, and nobody else's word for it.

Werkzeug's ProxyFix trusts the last N entries of X-Forwarded-For whoever sent the request:
with the controller reachable on the building's network as well as through its proxy, a
tenant could send the header himself and pass for anyone. Here the headers count only on a
request that came from an address of `[web] trusted_proxies`, and X-Forwarded-For is read
from the right (the entries the trusted proxies added) up to the first address that is not
a trusted proxy: the client. Entries further left are whatever the client claimed.

A request from a trusted proxy also gives its scheme (X-Forwarded-Proto, "http" or "https")
and host (X-Forwarded-Host); these matter for the URLs the pages build, not for security.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR blocks ("127.0.0.1", "10.0.0.0/8", "::1"); ValueError names a bad one."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or a CIDR block such as 10.0.0.0/8") from None
    return tuple(out)


def _ip(text: str):
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (ip.ipv4_mapped if ip.version == 6 else None) or ip


def _within(ip, nets: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in net for net in nets)


def forwarded_client(peer, forwarded_for: str, trusted: tuple[Network, ...]):
    """The client's address from X-Forwarded-For, read from the right while the hops are trusted proxies;
    None when the peer is not a trusted proxy or the header names nobody."""
    if not _within(peer, trusted):
        return None
    client = None
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        ip = _ip(hop)
        if ip is None:
            break  # garbage from here leftwards: what the proxies added is used up
        client = ip
        if not _within(ip, trusted):
            break
    return client


def client_resolver(trusted: Iterable[Network]) -> Callable[[str, str | None], str]:
    """For the web server: the client a live connection counts against, as the middleware below will see it."""
    nets = tuple(trusted)

    def client_of(peer: str, forwarded_for: str | None) -> str:
        client = forwarded_client(_ip(peer), forwarded_for or "", nets)
        return str(client) if client is not None else peer

    return client_of


class TrustedProxies:
    """WSGI middleware: REMOTE_ADDR (and the scheme and host) as the trusted proxies saw them."""

    def __init__(self, app: Callable, trusted: Iterable[Network]):
        self.app = app
        self.trusted = tuple(trusted)

    def __call__(self, environ: dict, start_response):
        peer = _ip(environ.get("REMOTE_ADDR", ""))
        if _within(peer, self.trusted):
            client = forwarded_client(peer, environ.get("HTTP_X_FORWARDED_FOR", ""), self.trusted)
            if client is not None:
                environ["payg.proxy_peer"] = environ.get("REMOTE_ADDR")
                environ["REMOTE_ADDR"] = str(client)
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[-1].strip()
            if host:
                environ["HTTP_HOST"] = host
        return self.app(environ, start_response)
