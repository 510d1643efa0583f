"""The real servers the cluster tests stand on: PostgreSQL, redis-server and HAProxy.

Installed by scripts/postgres.sh (./dev setup); when one is missing these fail and say so.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.haproxy import HAProxy
from tests.support.peers import eventually
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own: these tests stop and kill it; the session's stays up."""
    with PostgresServer() as server:
        yield server


def rows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")]


def test_session_server_answers_and_gives_each_test_a_database(
    postgres: PostgresServer, pg_url: str
) -> None:
    assert pg_url != postgres.url
    with psycopg.connect(pg_url) as conn:
        current, fsync, sync_commit, listen = conn.execute(
            "SELECT current_database(), current_setting('fsync'),"
            " current_setting('synchronous_commit'), current_setting('listen_addresses')"
        ).fetchone() or ("", "", "", "")
        assert current == pg_url.rsplit("/", 1)[1]
        assert (fsync, sync_commit, listen) == ("on", "on", "127.0.0.1")
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 't'").fetchone() == (0,)
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("huddle",)


def test_committed_rows_survive_restart_and_kill(own_postgres: PostgresServer) -> None:
    url = own_postgres.new_database("survive")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('before-restart')")
    own_postgres.restart()
    assert rows(url) == ["before-restart"]

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES ('committed')")
        uncommitted = psycopg.connect(url)
        uncommitted.execute("INSERT INTO t VALUES ('in-flight')")
        own_postgres.kill()  # mid-transaction: only the committed row may come back
    uncommitted.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    own_postgres.start()  # crash recovery from the WAL
    assert rows(url) == ["before-restart", "committed"]


def test_redis_answers_ping() -> None:
    with RedisServer() as redis, socket.create_connection(("127.0.0.1", redis.port)) as sock:
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nhi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        answer = b""
        while not answer.endswith(b"hi\r\n"):
            chunk = sock.recv(64)
            assert chunk, f"redis closed after {answer!r}"
            answer += chunk
        assert answer == b"+OK\r\n$2\r\nhi\r\n"
        assert redis.ping()


async def http_get(port: int, path: str = "/") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def backend(name: str) -> asyncio.Server:
    """A stand-in hub: /healthz answers 200, every other path answers the backend's name."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split()[1].decode()
            body = b"ok" if path == "/healthz" else name.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # a health check that hung up
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_haproxy_balances_and_fails_over() -> None:
    a, b = await backend("a"), await backend("b")
    addresses = [s.sockets[0].getsockname()[:2] for s in (a, b)]
    with HAProxy([(host, port) for host, port in addresses]) as proxy:
        await eventually(
            lambda: set(proxy.states().values()) == {"UP"}, what="both backends UP", timeout=10
        )
        served = {(await http_get(proxy.port))[1] for _ in range(4)}
        assert served == {"a", "b"}

        a.close()
        await a.wait_closed()
        await eventually(
            lambda: proxy.states()[addresses[0]] == "DOWN", what="a marked DOWN", timeout=10
        )
        for _ in range(6):
            assert await http_get(proxy.port) == (200, "b")
    b.close()
    await b.wait_closed()
