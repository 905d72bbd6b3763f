"""Where a connection goes: each host's addresses, looked up once per :data:`DNS_SECONDS`.

A run opens a connection per request in flight, and again whenever one is closed (a timeout, a server
closing idle ones); a lookup through the system's resolver each time would run in a thread, and against a
DNS server. aiohttp kept its lookups for as long (``ttl_dns_cache``, which the connector set to 300 s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable

DNS_SECONDS = 300.0  # how long a host's looked-up addresses serve new connections

Lookup = Callable[[str, int], Awaitable[list[str]]]  # a host's addresses, as the system's resolver gives them


async def _system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Addresses:
    """Each host's addresses: an IP address as it is; a name looked up once per DNS_SECONDS, one lookup at a
    time (the first connections of a run all wait for the same one), then handed out in turn."""

    def __init__(self, lookup: Lookup | None) -> None:
        self._lookup = lookup or _system_lookup
        self._known: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._asked: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._turn = 0

    async def of(self, host: str, port: int) -> list[str]:
        """The addresses to try, in order, for a new connection to ``host``."""
        if _is_address(host):
            return [host]
        known = self._known.get((host, port))
        if known is None or time.monotonic() - known[0] > DNS_SECONDS:
            asked = self._asked.get((host, port))
            if asked is None:
                asked = self._asked[host, port] = asyncio.ensure_future(self._look_up(host, port))
                asked.add_done_callback(_retrieved)  # its failure is each waiter's, even when none is left
            addresses = await asyncio.shield(asked)
        else:
            addresses = known[1]
        self._turn += 1
        start = self._turn % len(addresses)
        return addresses[start:] + addresses[:start]

    async def _look_up(self, host: str, port: int) -> list[str]:
        try:
            addresses = await self._lookup(host, port)
            if not addresses:
                raise OSError(f"{host} has no address")
            self._known[host, port] = (time.monotonic(), addresses)
            return addresses
        finally:
            del self._asked[host, port]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _retrieved(done: asyncio.Future[list[str]]) -> None:
    if not done.cancelled():
        done.exception()
