"""Live fan-out of a stream in flight: identical stream requests that arrive while the first one
streams get its events as they arrive, not once it is over.

mitmproxy sends an answer an addon makes in one piece, so a waiting request cannot be fed from a
hook. Instead it is sent to this relay: a small HTTP/1.1 server on 127.0.0.1 that writes the first
request's answer, its status, headers and body bytes as they came from upstream (encoding kept),
from the start and then live, and ends it when the first one's stream ends (or cuts it off when that
fails, as the upstream would have). mitmproxy streams the relay's answer to the waiting client like
any upstream's.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})


class Broadcast:
    """One stream in flight: what has come so far, and what comes next."""

    def __init__(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]
        self.chunks: list[bytes] = []
        self.ended = False  # the whole body came
        self.failed = False  # it broke off: listeners are cut off too
        self._changed = asyncio.Event()

    def add(self, chunk: bytes) -> None:
        """A body chunk as it came from upstream; b"" is the end."""
        if chunk:
            self.chunks.append(chunk)
        else:
            self.ended = True
        self._wake()

    def fail(self) -> None:
        if not self.ended:
            self.failed = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, writer: asyncio.StreamWriter) -> None:
        """Write this answer to a relay connection: what came so far, then the rest as it comes."""
        head = [b"HTTP/1.1 %d OK" % self.status] + [name + b": " + value for name, value in self.headers]
        writer.write(b"\r\n".join(head + [b"transfer-encoding: chunked", b"connection: close", b"", b""]))
        sent = 0
        while True:
            changed = self._changed
            while sent < len(self.chunks):
                chunk = self.chunks[sent]
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += 1
            await writer.drain()
            if self.failed:
                return  # cut off, as the first one's was
            if self.ended:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return
            await changed.wait()


class Relay:
    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._broadcasts: dict[str, Broadcast] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def open(self, name: str, status: int, headers: Iterable[tuple[bytes, bytes]]) -> Broadcast:
        self._broadcasts[name] = broadcast = Broadcast(status, headers)
        return broadcast

    def get(self, name: str) -> Broadcast | None:
        return self._broadcasts.get(name)

    def close_broadcast(self, name: str) -> None:
        """Taken out of view once the first one's answer is over: followers that already have it
        keep it; later ones are answered from the cache."""
        self._broadcasts.pop(name, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                field, _, value = line.partition(b":")
                if field.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)  # the request's body: the relay answers by its path
            path = request_line.split(b" ")[1].decode().lstrip("/") if b" " in request_line else ""
            broadcast = self._broadcasts.get(path)
            if broadcast is None:
                writer.write(b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            else:
                await broadcast.follow(writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            logger.debug("llm-cache: a relayed stream ended early: %s", e)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
