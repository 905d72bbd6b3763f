"""The HTTP client's resend of a POST on a dead pooled connection, and only there.

A server may close a keep-alive connection just as it is reused (llama.cpp does after every
streamed reply): the request is sent once more on a new connection. A fresh connection that
drops is not resent: the server may have acted on the request. The server here is a raw asyncio
one on 127.0.0.1 that drops one chosen request of each connection without answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from connector import errors
from connector.endpoint.http11 import Http11Transport
from tests.test_http11 import KeepAliveServer

pytestmark = pytest.mark.timeout(60)

REPLY = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[KeepAliveServer, str]]:
    fake = KeepAliveServer(REPLY, drop=request.param)
    listening = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield fake, f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        listening.close()
        await listening.wait_closed()


@pytest.fixture
async def transport() -> AsyncIterator[Http11Transport]:
    client = Http11Transport()
    try:
        yield client
    finally:
        await client.aclose()


async def _post(transport: Http11Transport, url: str) -> int:
    async with transport.request("POST", url, {"Content-Type": "application/json"}, b"{}", 10) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize("server", [2], indirect=True)
async def test_a_post_on_a_dead_reused_connection_is_sent_again_on_a_new_one(
        server: tuple[KeepAliveServer, str], transport: Http11Transport) -> None:
    fake, url = server
    assert await _post(transport, url) == 200
    assert await _post(transport, url) == 200  # its first try went out on the pooled connection, and died
    assert fake.seen == [(1, 1), (1, 2), (2, 1)] and fake.answered == 2


@pytest.mark.parametrize("server", [1], indirect=True)
async def test_a_post_on_a_new_connection_that_drops_is_not_sent_again(server: tuple[KeepAliveServer, str],
                                                                       transport: Http11Transport) -> None:
    fake, url = server
    with pytest.raises(errors.TransportError):
        await _post(transport, url)
    assert fake.seen == [(1, 1)] and fake.answered == 0


@pytest.mark.parametrize("server", [2], indirect=True)
async def test_after_three_dead_reused_connections_the_post_goes_on_a_new_one_and_the_idle_ones_are_closed(
        server: tuple[KeepAliveServer, str], transport: Http11Transport) -> None:
    fake, url = server
    assert await asyncio.gather(*(_post(transport, url) for _ in range(5))) == [200] * 5  # 5 kept alive
    assert await _post(transport, url) == 200  # each kept one drops its 2nd request, unanswered
    second_tries = [connection for connection, count in fake.seen if count == 2]
    assert len(second_tries) == 3 and fake.seen[-1] == (6, 1) and fake.answered == 6
