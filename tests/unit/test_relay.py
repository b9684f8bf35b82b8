"""The relay of a stream in flight: a late follower gets what came so far, then the rest live; a
failed stream is cut off for followers too (llm_cache.relay)."""

import asyncio

from llm_cache.endpoints import Wire
from llm_cache.flights import Flights, Relayed
from llm_cache.relay import Relay


async def fetch(port: int, name: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /%s HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}" % name.encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_a_late_follower_gets_the_stream_so_far_then_live_and_the_end():
    relay = Relay()
    await relay.start()
    try:
        broadcast = relay.open("k", 200, [(b"content-type", b"text/event-stream"), (b"content-length", b"99")])
        broadcast.add(b"data: 1\n\n")
        follower = asyncio.create_task(fetch(relay.port, "k"))
        await asyncio.sleep(0.05)
        assert not follower.done()  # it has the first event and waits for more
        broadcast.add(b"data: 2\n\n")
        broadcast.add(b"")
        answer = await asyncio.wait_for(follower, 5)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-type: text/event-stream" in head
        assert b"content-length" not in head and b"transfer-encoding: chunked" in head
        assert body == b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"
        assert (await fetch(relay.port, "nothing")).startswith(b"HTTP/1.1 410")
    finally:
        relay.close()


async def test_a_failed_stream_is_cut_off_for_its_followers():
    relay = Relay()
    await relay.start()
    try:
        broadcast = relay.open("k", 200, [(b"content-type", b"text/event-stream")])
        broadcast.add(b"data: 1\n\n")
        follower = asyncio.create_task(fetch(relay.port, "k"))
        await asyncio.sleep(0.05)
        broadcast.fail()
        answer = await asyncio.wait_for(follower, 5)
        assert answer.endswith(b"9\r\ndata: 1\n\n\r\n")  # no last chunk: the client sees it broke off
    finally:
        relay.close()


async def test_a_follower_after_the_stream_ended_waits_for_the_writers_word():
    # A stream that has ended is not known to be whole until the writer has checked it: a follower
    # that comes then is not relayed it, and goes upstream itself when it is not stored.
    flights = Flights()
    await flights.relay.start()
    try:
        assert flights.lead("k", Wire.SSE) is None
        add = flights.streaming("k", 200, [(b"content-type", b"text/event-stream")])
        assert add is not None
        live = flights.lead("k", Wire.SSE)
        assert isinstance(await flights.follow("k", live, Wire.SSE, 5), Relayed)  # while it comes: live
        add(b'data: {"type": "response.failed"}\n\n')
        add(b"")
        late = flights.lead("k", Wire.SSE)
        waiting = asyncio.create_task(flights.follow("k", late, Wire.SSE, 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        flights.release("k", None)  # the writer: not stored
        assert await asyncio.wait_for(waiting, 5) is None
    finally:
        flights.relay.close()
