"""Single flight: identical fresh requests in flight share one upstream call.

The first (the leader) goes upstream. Those that arrive while it is in flight (followers) wait:
- a follower that wants the stream the leader is receiving is relayed it live (llm_cache.relay),
  from its first byte, as soon as the leader's answer starts;
- any other follower waits for the leader's recorded answer and is answered from it, in its own
  wire format;
- if the leader fails, or its answer is not recorded, followers go upstream themselves.
"""

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from llm_cache.endpoints import Wire
from llm_cache.records import Record
from llm_cache.relay import Broadcast, Relay

GRACE = 5.0  # seconds a finished broadcast stays open to followers already sent to the relay


class Flight(NamedTuple):
    answer: asyncio.Future[Record | None]  # the leader's recorded answer, or None when there is none
    streaming: asyncio.Event  # set when the leader's stream starts (and then `broadcast` is there)
    wire: Wire
    broadcast: list[Broadcast]  # the leader's stream, once it starts (a one-slot box)


class Relayed(NamedTuple):
    """A follower's way to the leader's live stream: the relay's port and the stream's name."""

    port: int
    name: str


class Flights:
    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self.relay = Relay()

    def lead(self, entry: str, wire: Wire) -> Flight | None:
        """None when this request leads (no identical one is in flight), else the flight to follow."""
        flight = self._flights.get(entry)
        if flight is not None:
            return flight
        loop = asyncio.get_running_loop()
        self._flights[entry] = Flight(loop.create_future(), asyncio.Event(), wire, [])
        return None

    def streaming(self, entry: str, status: int, headers: Iterable[tuple[bytes, bytes]]
                  ) -> Callable[[bytes], None] | None:
        """The leader's stream starts: followers that want it are relayed it from now on. Returns
        what to call with each body chunk as it comes (b"" at its end)."""
        flight = self._flights.get(entry)
        if flight is None or not self.relay.port:
            return None
        broadcast = self.relay.open(entry, status, headers)
        flight.broadcast.append(broadcast)
        flight.streaming.set()
        return broadcast.add

    def release(self, entry: str, record: Record | None) -> None:
        """The leader is done: with its recorded answer, or with none (it failed, or was not recorded)."""
        flight = self._flights.pop(entry, None)
        if flight is None:
            return
        if flight.broadcast:
            broadcast = flight.broadcast[0]
            if record is None:
                broadcast.fail()
            elif not broadcast.ended:  # complete though its connection broke (the Codex CLI hangs up first)
                broadcast.add(b"")
            asyncio.get_running_loop().call_later(GRACE, self.relay.close_broadcast, entry)
        if not flight.answer.done():
            flight.answer.set_result(record)

    async def follow(self, entry: str, flight: Flight, wire: Wire, wait: float) -> Record | Relayed | None:
        """What a follower gets: the leader's live stream (when it wants that stream), its recorded
        answer, or None (go upstream) when there is neither within `wait` seconds."""
        started: asyncio.Future[Any] = asyncio.ensure_future(flight.streaming.wait())
        answer: asyncio.Future[Any] = flight.answer
        try:
            done, _ = await asyncio.wait({started, answer}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if flight.answer in done:
            return flight.answer.result()
        # Live only while the leader's stream is coming: one that has ended is not known to be whole
        # until the writer has checked it (a stream may end in an error event), so wait for that.
        if started in done and wire is flight.wire and not flight.broadcast[0].ended:
            return Relayed(self.relay.port, entry)
        if not done:
            return None
        try:  # the leader streams something else than this one wants: wait for its recorded answer
            return await asyncio.wait_for(asyncio.shield(flight.answer), wait)
        except TimeoutError:
            return None
