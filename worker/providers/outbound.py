"""Requests to URLs a tenant gave us (an automation's webhook step): one guarded client.

A tenant's URL is hostile until proven otherwise: it may name our own loopback, a private
network, a cloud's metadata service, Flower or a metrics port, directly or through a
hostname that resolves there, with a redirect, or with credentials in it; or it may answer
slowly, byte by byte, to hold a worker. So:

- ``http``/``https`` only, no ``user:password@``, at most 2,048 characters;
- the host is resolved here and *every* address it resolves to must be public
  (``ipaddress.is_global``, IPv4-mapped IPv6 unwrapped): loopback, private, link-local
  (169.254.169.254 among them), shared, multicast and reserved ranges are refused, unless
  the operator allows a network (``DISPATCH_OUTBOUND_ALLOW``, comma-separated CIDRs);
- the request goes to the address that was checked (the URL's host stays in ``Host`` and
  in TLS's SNI and certificate check), so a second DNS answer cannot change it;
- no redirect is followed; the whole request, body read included, has one deadline; at
  most ``max_response_bytes`` of the answer are read;
- a connection pool of its own, apart from the providers'.

A refusal or a timeout is the step's failed attempt (``OutboundError``), never an
infrastructure error that would put the job back on the queue forever.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from worker.providers.http11 import Http11Error, Http11Pool

MAX_URL_CHARS = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundError(Exception):
    """The request was not made, or did not complete: ``reason`` says why (no internals
    beyond what the tenant gave); ``retryable`` when trying later may help."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    elapsed_ms: float


def networks(spec: str) -> list[IpNetwork]:
    """``DISPATCH_OUTBOUND_ALLOW``: "10.0.0.0/8,192.168.1.5" → the networks."""
    parts = [part.strip() for part in spec.split(",")]
    return [ipaddress.ip_network(part, strict=False) for part in parts if part]


def _public(address: IpAddress, allowed: Iterable[IpNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return True
    return address.is_global and not address.is_multicast


def check_url(url: str, allowed: Iterable[IpNetwork] = ()) -> httpx.URL:
    """What can be said of the URL without resolving it (when a tenant saves it): its
    scheme, no credentials, and a literal address (or ``localhost``) that is public."""
    if len(url) > MAX_URL_CHARS:
        raise OutboundError(f"URL longer than {MAX_URL_CHARS} characters", retryable=False)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise OutboundError("not a valid URL", retryable=False) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise OutboundError("only http:// and https:// URLs with a host", retryable=False)
    if parsed.userinfo:
        raise OutboundError("credentials in the URL are not allowed", retryable=False)
    host = parsed.host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise OutboundError("a loopback host is not allowed", retryable=False)
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not _public(literal, list(allowed)):
        raise OutboundError("a private, loopback or link-local address is not allowed",
                            retryable=False)  # fmt: skip
    return parsed


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise OutboundError(f"{host} does not resolve", retryable=True) from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


Resolver = Callable[[str, int], Awaitable[list[IpAddress]]]


class OutboundClient:
    """``transport`` and ``resolve`` stand in for the network and DNS in unit tests (with a
    ``transport`` the requests go through httpx; without, through the lean HTTP/1.1 pool of
    ``worker.providers.http11``)."""

    def __init__(
        self,
        *,
        allow: str = "",
        deadline_s: float = 10.0,
        max_response_bytes: int = 64 * 1024,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self._resolve = resolve or _resolve
        self._allowed = networks(allow)
        self._deadline_s = deadline_s
        self._max_response_bytes = max_response_bytes
        self._pool = Http11Pool(max_idle_per_origin=max_connections) if transport is None else None
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment
            timeout=deadline_s,
            transport=transport,
            # Every connection kept open between requests: an endpoint sent to with n
            # requests at once otherwise opens connections again and again.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> Reply:
        started = time.perf_counter()
        parsed = check_url(url, self._allowed)
        host = parsed.host
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self._deadline_s):
                # A literal address was checked by check_url; a name is resolved here, and
                # every address it resolves to checked.
                literal = _literal(host)
                addresses = [literal] if literal is not None else await self._resolve(host, port)
                if not addresses or not all(_public(a, self._allowed) for a in addresses):
                    raise OutboundError(
                        f"{host} resolves to a private, loopback or link-local address",
                        retryable=False,
                    )
                if self._pool is not None:
                    status, body = await self._pool.post(
                        (str(addresses[0]), port, host if parsed.scheme == "https" else None),
                        parsed.raw_path.decode("ascii"),
                        [("host", parsed.netloc.decode("ascii")), *headers.items()],
                        content,
                        self._max_response_bytes,
                    )
                    return Reply(status, body, (time.perf_counter() - started) * 1000)
                pinned = parsed.copy_with(host=str(addresses[0]))
                request = self._http.build_request(
                    "POST",
                    pinned,
                    content=content,
                    headers={**headers, "Host": parsed.netloc.decode("ascii")},
                    extensions={"sni_hostname": host} if parsed.scheme == "https" else {},
                )
                response = await self._http.send(request, stream=True)
                try:
                    body = await self._read(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise OutboundError(
                f"no complete answer within {self._deadline_s:g}s", retryable=True
            ) from None
        except (httpx.HTTPError, Http11Error) as exc:
            reason = str(exc) if isinstance(exc, Http11Error) else type(exc).__name__
            raise OutboundError(reason, retryable=True) from None
        return Reply(response.status_code, body, (time.perf_counter() - started) * 1000)

    async def _read(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                break  # enough: the status is what counts, the rest is not read
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()
