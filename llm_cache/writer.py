"""Every write happens in one child process, in batched transactions.

Measured on this machine: a peewee insert committed on mitmproxy's event loop stalls it for tens of
ms when SQLite checkpoints its WAL, and `asyncio.to_thread` inserts stalled it up to 150 ms. A
writer *thread* keeps commits off the loop but shares the GIL with it: under load every lookup that
released the GIL inside SQLite waited to get it back (a 10 us lookup took ~100 us), and recording
cost ~25% of mitmproxy's throughput. A writer process shares nothing.

The loop hands ops over itself, through a pipe it never blocks on: each op is pickled and written
without waiting (the pipe is enlarged to 1 MB, some fifty 20 KB requests); what does not fit waits
in memory and is written when the loop sees the pipe writable again. multiprocessing's queue did this from a
feeder thread that woke for every op and took the GIL from the loop: ~17 us more process CPU per
20 KB record than pickling and writing here (scripts/bench --hooks, A/B).

On Linux an op's bytes go through shared memory instead (a ring the two processes map), and
only its 4-byte header through the pipe: writing 22 KB into a pipe cost the loop ~24 us, copying
it into the ring ~6 us (measured on this machine). An op that does not fit in the ring's free
space goes through the pipe whole; the child hands the space back as soon as it has read the ops.

The child imports no mitmproxy. It stops when told to, when the pipe closes, or when it sees that
its parent is gone.
"""

import asyncio
import contextlib
import itertools
import logging
import mmap
import multiprocessing
import os
import pickle
import queue
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import reduction
from typing import Any

logger = logging.getLogger(__name__)

Apply = Callable[[Sequence[Any]], list[str]]  # writes a batch; returns notes on entries it skipped

_STOP = "stop"
_FLUSH = "flush"

PIPE_BYTES = 1 << 20  # asked of the kernel for the pipe (Linux's default ceiling for a user)
MAX_BACKLOG = 256 << 20  # bytes of ops waiting for the pipe before new ones are refused
_HEADER = 4  # bytes of big-endian length before each pickled op
_IN_RING = 1 << 31  # set in the header: the op's bytes are in the ring, not after the header
RING_BYTES = 8 << 20  # shared memory for ops in flight (some 400 requests of 20 KB)
SEND_TIMEOUT = 30.0  # seconds flush and close wait for the pipe to take what is queued


class ProcessWriter:
    def __init__(
        self,
        make_apply: Callable[..., Apply],
        args: tuple[Any, ...],
        settled: Callable[[list[int], str | None, list[str]], None],
        *,
        linger: float = 0.05,
        max_batch: int = 512,
    ) -> None:
        """`make_apply(*args)` runs in the child and returns `apply(ops)`, which writes one batch in
        one transaction and returns notes on entries it had to skip. `settled(sequence numbers,
        error, notes)` runs in the parent (on a helper thread) once a batch is written or has
        failed. Ops are picklable; `submit` returns the op's sequence number."""
        context = multiprocessing.get_context("spawn")  # fork would copy mitmproxy's threads and loop
        reading_end, self._inbox = context.Pipe(duplex=False)
        self._fd = self._inbox.fileno()
        _enlarge_pipe(self._fd)
        os.set_blocking(self._fd, False)
        self._backlog: deque[memoryview] = deque()  # frames (or their unwritten tails) the pipe had no room for
        self._backlog_bytes = 0
        self._waiting_on: asyncio.AbstractEventLoop | None = None  # the loop told to drain the backlog
        self._send_lock = threading.Lock()
        self._outbox = context.Queue()
        self._ring = _Ring.create(RING_BYTES)
        self._ring_head = 0  # bytes ever put in the ring
        self._ring_freed = 0  # of those, bytes the child has read (it says so through the outbox)
        self._settled = settled
        self._numbers = itertools.count(1)
        self._flushed: dict[int, threading.Event] = {}
        self._closing = False
        self.dead: str | None = None
        self._process = context.Process(
            target=_child, name="llm-cache-writer", daemon=True,
            args=(make_apply, args, reading_end, self._outbox, os.getpid(), linger, max_batch,
                  self._ring),
        )
        with _main_module_hidden():
            self._process.start()
        reading_end.close()  # the child has its own copy; ours would keep the pipe open after it dies
        self._acks = threading.Thread(target=self._read_acks, name="llm-cache-writer-acks", daemon=True)
        self._acks.start()

    def submit(self, op: Any) -> int:
        """Hand an op to the child without blocking; returns its sequence number. Raises
        RuntimeError when the child is gone or too far behind."""
        number = next(self._numbers)
        self._send(pickle.dumps((number, op), protocol=pickle.HIGHEST_PROTOCOL))
        return number

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything submitted so far has been written (or has failed)."""
        if self.dead:
            return
        token = next(self._numbers)
        done = self._flushed[token] = threading.Event()
        try:
            self._send(pickle.dumps((token, _FLUSH)), wait=True)
        except (RuntimeError, OSError):
            self._flushed.pop(token, None)
            return
        if not done.wait(timeout):
            logger.warning("llm-cache: the writer did not catch up within %.0f s", timeout)
        self._flushed.pop(token, None)

    def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the child."""
        self._closing = True
        if self._process.is_alive():
            with contextlib.suppress(RuntimeError, OSError):
                self._send(pickle.dumps((0, _STOP)), wait=True)
            self._process.join(timeout)
        if self._process.is_alive():
            logger.warning("llm-cache: the writer did not finish within %.0f s; unwritten entries are lost", timeout)
            self._process.kill()
        self._acks.join(2)
        self._forget_loop()
        self._inbox.close()
        self._outbox.close()
        if self._ring is not None:
            self._ring.close()

    def _send(self, payload: bytes, *, wait: bool = False) -> None:
        """Write one framed op: at once if there is room, else after the backlog. The op's bytes go
        into the ring when it has room for them (then only the header goes through the pipe).
        `wait` blocks until the pipe has taken everything (flush and close: never on the hot path)."""
        with self._send_lock:
            if self.dead:
                raise RuntimeError(f"the writer process stopped ({self.dead})")
            size = len(payload)
            if size >= _IN_RING:
                raise RuntimeError("an op over 2 GB cannot be framed")
            in_ring = self._ring is not None and size <= self._ring.size - (self._ring_head - self._ring_freed)
            frame: list[bytes | memoryview] = (
                [(size | _IN_RING).to_bytes(_HEADER, "big")] if in_ring else [size.to_bytes(_HEADER, "big"), payload])
            framed = sum(len(part) for part in frame)
            # Refused before the ring is touched: the child takes ring bytes in the order headers arrive.
            if self._backlog_bytes + framed > MAX_BACKLOG:
                raise RuntimeError(f"the writer process is over {MAX_BACKLOG >> 20} MB behind")
            if in_ring:
                self._ring.put(self._ring_head, payload)  # type: ignore[union-attr]
                self._ring_head += size
            written = 0 if self._backlog else self._write(frame)
            if written < framed:
                rest = memoryview(b"".join(frame))[written:]
                self._backlog.append(rest)
                self._backlog_bytes += len(rest)
            if not self._backlog:
                return
            if wait:
                self._write_backlog_within(SEND_TIMEOUT)
            else:
                self._drain_later()

    def _write(self, parts: list[bytes | memoryview]) -> int:
        """As much of parts, in order, as the pipe takes now (one syscall, no joining copy)."""
        try:
            return os.writev(self._fd, parts)
        except BlockingIOError:
            return 0
        except OSError as e:  # the child is gone (EPIPE): nothing more can be written
            self._died(f"its pipe broke: {e.strerror}")
            raise RuntimeError(f"the writer process stopped ({self.dead})") from e

    def _write_backlog(self) -> None:
        """As much of the backlog as the pipe takes now."""
        while self._backlog:
            head = self._backlog[0]
            written = self._write([head])
            self._backlog_bytes -= written
            if written < len(head):
                self._backlog[0] = head[written:]
                return
            self._backlog.popleft()

    def _write_backlog_within(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._write_backlog()
        while self._backlog:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the writer process took nothing for {timeout:.0f} s")
            select.select([], [self._fd], [], remaining)
            self._write_backlog()

    def _drain_later(self) -> None:
        """Have the event loop write the backlog when the pipe has room; without a running loop
        (scripts and tests), write it now."""
        if self._waiting_on is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_backlog_within(SEND_TIMEOUT)
            return
        loop.add_writer(self._fd, self._drain)
        self._waiting_on = loop

    def _drain(self) -> None:
        with self._send_lock:
            try:
                self._write_backlog()
            except RuntimeError:  # the child died: what waits can never be written
                self._backlog.clear()
                self._backlog_bytes = 0
            if not self._backlog:
                self._forget_loop()

    def _forget_loop(self) -> None:
        if self._waiting_on is not None:
            with contextlib.suppress(Exception):  # a closed loop has nothing to forget
                self._waiting_on.remove_writer(self._fd)
            self._waiting_on = None

    def _read_acks(self) -> None:
        while True:
            try:
                kind, payload, error, notes = self._outbox.get(timeout=1.0)
            except queue.Empty:
                if not self._process.is_alive():
                    self._died(f"exit code {self._process.exitcode}")
                    return
                continue
            except (EOFError, OSError):
                return
            if kind == "freed":
                self._ring_freed = payload
            elif kind == "settled":
                self._settled(payload, error, notes)
            elif kind == "flushed" and payload in self._flushed:
                self._flushed[payload].set()
            elif kind == "dead":
                self._died(error)
                return
            elif kind == "stopped":
                return

    def _died(self, reason: str | None) -> None:
        if self._closing:
            return
        self.dead = reason or "unknown"
        logger.warning("llm-cache: the writer process stopped (%s); responses are no longer recorded", self.dead)
        for event in self._flushed.values():
            event.set()


def _enlarge_pipe(fd: int) -> None:
    """Linux pipes hold 64 KB, about three 20 KB requests; ask for PIPE_BYTES (other systems, or a
    lower limit in /proc/sys/fs/pipe-max-size, keep what they give)."""
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Ring:
    """Shared memory both processes map: the parent puts each op's bytes at the next offset (modulo
    the size), the child takes them in the same order. Handed to the spawned child, it arrives as the
    child's own mapping of the same memory."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self._map = mmap.mmap(fd, size)

    @classmethod
    def create(cls, size: int) -> "_Ring | None":
        """None where anonymous shared memory is not to be had (memfd is Linux's): ops then go
        through the pipe whole."""
        if not hasattr(os, "memfd_create"):
            return None
        try:
            fd = os.memfd_create("llm-cache-writer", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            return cls(fd, size)
        except (OSError, ValueError) as e:
            logger.info("llm-cache: no shared memory for the writer (%s); ops go through its pipe", e)
            return None

    def __reduce__(self) -> tuple[Any, ...]:
        return _Ring._inherited, (reduction.DupFd(self.fd), self.size)  # only while spawning the child

    @staticmethod
    def _inherited(fd: Any, size: int) -> "_Ring":
        return _Ring(fd.detach(), size)

    def put(self, at: int, data: bytes) -> None:
        start, view = at % self.size, memoryview(data)
        first = min(len(view), self.size - start)
        self._map[start:start + first] = view[:first]
        if first < len(view):
            self._map[:len(view) - first] = view[first:]

    def take(self, at: int, size: int) -> bytes:
        start = at % self.size
        if start + size <= self.size:
            return self._map[start:start + size]
        return self._map[start:] + self._map[:start + size - self.size]

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


class _Frames:
    """The child's end of the pipe: length-prefixed pickled ops, their bytes after the header or in
    the ring."""

    def __init__(self, connection: Any, ring: _Ring | None) -> None:
        self._connection = connection  # kept, so its descriptor stays open
        self._fd = connection.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = bytearray()
        self._ring = ring
        self.ring_tail = 0  # bytes ever taken from the ring
        self.closed = False

    def read(self, timeout: float | None) -> list[tuple[int, Any]]:
        """The ops that have arrived, waiting up to `timeout` seconds for the first (None: don't
        wait). Sets `closed` when the parent's end is gone."""
        if timeout is not None and not self._buffer_has_frame():
            select.select([self._fd], [], [], timeout)
        while True:
            try:
                chunk = os.read(self._fd, PIPE_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                self.closed = True
                break
            self._buffer += chunk
        ops, at = [], 0
        view = memoryview(self._buffer)
        while len(view) - at >= _HEADER:
            size = int.from_bytes(view[at:at + _HEADER], "big")
            if size & _IN_RING:
                if self._ring is None:
                    raise RuntimeError("an op in a ring this writer was not given")
                size &= ~_IN_RING
                ops.append(pickle.loads(self._ring.take(self.ring_tail, size)))
                self.ring_tail += size
                at += _HEADER
                continue
            if len(view) - at - _HEADER < size:
                break
            ops.append(pickle.loads(view[at + _HEADER:at + _HEADER + size]))
            at += _HEADER + size
        view.release()
        del self._buffer[:at]
        return ops

    def _buffer_has_frame(self) -> bool:
        if len(self._buffer) < _HEADER:
            return False
        size = int.from_bytes(self._buffer[:_HEADER], "big")
        return bool(size & _IN_RING) or len(self._buffer) - _HEADER >= size


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawn runs the parent's __main__ file again in the child (as __mp_main__), which starts a
    second proxy when that file is someone's own unguarded script that embeds mitmproxy. The
    child needs nothing from it: with neither __file__ nor __spec__, spawn imports no main."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None  # type: ignore[assignment]  # spawn reads it unguarded, so None, not absent
    try:
        yield
    finally:
        main.__dict__.update(saved)


def _child(make_apply: Callable[..., Apply], args: tuple[Any, ...], inbox: Any, outbox: Any, parent: int,
           linger: float, max_batch: int, ring: _Ring | None) -> None:
    try:
        apply = make_apply(*args)
    except Exception as e:
        outbox.put(("dead", None, _one_line(e), []))
        return
    frames = _Frames(inbox, ring)
    freed = 0
    waiting: deque[tuple[int, Any]] = deque()
    while True:
        if not waiting:
            waiting.extend(frames.read(timeout=1.0))
            if not waiting:
                if frames.closed or os.getppid() != parent:  # the proxy is gone, however it went
                    return
                continue
            if waiting[0][1] not in (_STOP, _FLUSH):
                time.sleep(linger)  # gather a batch: one commit per entry would cost far more
        waiting.extend(frames.read(timeout=None))
        if frames.ring_tail != freed:  # what is read is copied out: the parent may reuse its space
            freed = frames.ring_tail
            outbox.put(("freed", freed, None, []))
        batch: list[tuple[int, Any]] = []
        while waiting and len(batch) < max_batch and (not batch or batch[-1][1] != _STOP):
            batch.append(waiting.popleft())
        ops = [(number, op) for number, op in batch if op not in (_STOP, _FLUSH)]
        if ops:
            error, notes = None, []
            try:
                notes = apply([op for _, op in ops])
            except Exception as e:  # the cache must never take the proxy down: report, drop, go on
                error = _one_line(e)
            outbox.put(("settled", [number for number, _ in ops], error, notes))
        for number, op in batch:
            if op == _FLUSH:
                outbox.put(("flushed", number, None, []))
            elif op == _STOP:
                outbox.put(("stopped", None, None, []))
                return


def _one_line(error: BaseException) -> str:
    """A database error's first line: PostgreSQL's detail lines quote the whole failing row."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:300]}"
