"""Pooled HTTP sessions for delivery, one per sending thread (requests.Session is not
documented as thread-safe), each keeping its connections to a destination alive.

Every URL Switchboard calls was entered by an admin (a webhook's URL, Refiner's Base URL,
Kana's API URL), so every request goes through the same guard: private, loopback, link-local,
multicast and reserved addresses are refused. The check is made on every address the name
resolves to and again on the address the socket actually connected to, so a host name that
resolves differently between a check and the connection (DNS rebinding) cannot slip through.
``SWITCHBOARD_ALLOW_PRIVATE_URLS=true`` lifts it for internal services, the demo mode's
stand-ins (``start --demo`` sets it) and the test suite's fakes (decision 23).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

PRIVATE_ADDRESS = "is a private or loopback address"
_local = threading.local()


def session() -> requests.Session:
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        # Retries are the engine's business (with backoff and a record of each attempt).
        adapter = GuardedAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        current.headers["User-Agent"] = "Switchboard"
        if not urllib.request.getproxies_environment():
            # Otherwise every request reads the whole environment for proxies and looks for a
            # .netrc file: a fifth of a delivery's CPU time. What it would take from there, a
            # CA bundle, is read once here instead. With a proxy set in the environment,
            # requests keeps reading it on each request (and honours NO_PROXY per URL).
            current.trust_env = False
            current.verify = ca_bundle_from_environment() or True
        _local.session = current
    return current


def ca_bundle_from_environment() -> str | None:
    """The CA bundle requests would read from the environment for each request."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def private_urls_rule() -> str:
    """The rule in one sentence, for forms' help and error pages."""
    state = "allowed here" if settings.ALLOW_PRIVATE_URLS else "refused here"
    return (
        "Private and loopback addresses (10.x, 192.168.x, 127.0.0.1, localhost...) are "
        f"{state}: SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows them."
    )


def address_allowed(ip: str) -> bool:
    if settings.ALLOW_PRIVATE_URLS:
        return True
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class GuardedConnectionMixin:
    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        # Before connecting: every address the name resolves to. After: the one connected to,
        # in case the name resolved differently the second time.
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            infos = []  # the connection attempt below reports the lookup failure
        for *_, sockaddr in infos:
            self._refuse_unless_allowed(str(sockaddr[0]))
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            self._refuse_unless_allowed(sock.getpeername()[0])
        except NewConnectionError:
            sock.close()
            raise
        return sock

    def _refuse_unless_allowed(self, ip: str) -> None:
        if not address_allowed(ip):
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"{self.host} ({ip}) {PRIVATE_ADDRESS}: refused "
                "(SWITCHBOARD_ALLOW_PRIVATE_URLS=true allows it)",
            )


class GuardedHTTPConnection(GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }


def why_unreachable(exc: requests.RequestException, url: str) -> str:
    """What went wrong before any answer came, in words: the host name did not resolve, the
    connection was refused or timed out, TLS failed, or the address guard refused it.
    urllib3's own text (``HTTPSConnectionPool(host=...): Max retries exceeded...``) is for
    the details, not the headline."""
    parts = urlsplit(url)
    host = parts.hostname or url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 443 if parts.scheme == "https" else 80
    text = str(exc)
    if PRIVATE_ADDRESS in text:
        blocked = re.search(r"([^\s(\"']+ \([^)]*\) " + PRIVATE_ADDRESS + r".*?allows it\))", text)
        return blocked.group(1) if blocked else f"{host} {PRIVATE_ADDRESS}: refused"
    if isinstance(exc, requests.exceptions.SSLError):
        detail = re.search(r"\[SSL[^\]]*\] ([^(\"']+?)(?: \(_ssl|['\"]|\)|$)", text)
        reason = detail.group(1).strip() if detail else "the secure connection failed"
        hint = " (is it an http:// address?)" if "wrong version number" in reason else ""
        return f"TLS problem with {host}: {reason}{hint}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"timed out connecting to {host}:{port}"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"timed out waiting for {host} to answer"
    if any(cause in text for cause in NAME_NOT_RESOLVED):
        return f"could not resolve the host {host}"
    if "Connection refused" in text:
        return f"connection refused by {host}:{port} (nothing is listening there)"
    if "Connection reset" in text or "RemoteDisconnected" in text:
        return f"{host} closed the connection without an answer"
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return f"{url!r} is not a URL that can be reached"
    return f"could not connect to {host}:{port}"


NAME_NOT_RESOLVED = (
    "NameResolutionError",
    "Name or service not known",
    "nodename nor servname",
    "Temporary failure in name resolution",
    "No address associated with hostname",
    "getaddrinfo failed",
)
