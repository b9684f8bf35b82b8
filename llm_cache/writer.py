"""Every write happens in one child process, in batched transactions.

Measured on this machine: a peewee insert committed on mitmproxy's event loop stalls it for tens of
ms when SQLite checkpoints its WAL, and `asyncio.to_thread` inserts stalled it up to 150 ms. A
writer *thread* keeps commits off the loop but shares the GIL with it (a 10 us lookup took ~100 us
under load, and recording cost ~25% of mitmproxy's throughput). A writer process shares nothing.

The loop hands ops over itself, through a pipe it never blocks on: each op is pickled and written
without waiting (the pipe is enlarged to 1 MB); what does not fit waits in memory and is written
when the loop sees the pipe writable again. (A shared-memory ring beside the pipe was measured
against the pipe alone and showed no gain: it is gone.)

What the writer promises, and how:
- An op is settled (written, or failed for good) exactly once, and the parent hears of it
  (`settled`). The child commits as soon as ops arrive, gathering what arrived meanwhile into one
  transaction: a waiting client hears "stored" a few ms after its answer.
- A failure that may pass (a locked database, a full disk, a read-only file system, a server that
  went away) is retried by the child, with backoff, for up to RETRY_FOR seconds; the parent hears
  of the first failure at once (`retrying`), then of the outcome.
- A child that dies is started again (with backoff), and every op not yet settled is sent to the
  new one: the parent keeps each op's bytes until it is settled (at most MAX_BACKLOG of them).

The child imports no mitmproxy. It stops when told to, when the pipe closes, or when it sees that
its parent is gone.
"""

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import select
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

Apply = Callable[[Sequence[Any]], list[Any]]  # writes a batch; returns notes (on entries it skipped, …)
Settled = Callable[[list[int], str | None, list[Any]], None]  # (op numbers, error or None, notes)

_STOP = "stop"
_FLUSH = "flush"

PIPE_BYTES = 1 << 20  # asked of the kernel for the pipe (Linux's default ceiling for a user)
MAX_BACKLOG = 256 << 20  # bytes of ops not yet settled before new ones are refused
_HEADER = 4  # bytes of big-endian length before each pickled op
SEND_TIMEOUT = 30.0  # seconds flush and close wait for the pipe to take what is queued
RETRY_FOR = 120.0  # seconds a batch that failed for a reason that may pass is retried
RESTART_AFTER = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # seconds before each restart of a dead child


class Later(NamedTuple):
    """A note an Apply returns for work to do after the batch is acknowledged, and only while no
    other write waits (explaining near misses): the child runs it then, and sends what it returns
    as notes of their own. A backlog of it is bounded (LATER_KEPT); the oldest is dropped."""

    work: Callable[[], list[Any]]


LATER_KEPT = 64
LATER_SHARE = 0.1  # of the writer's time, at most, goes to work left for later (a bucket of 0.5 s)


class Retry(Exception):
    """Raised by an Apply for a failure that may pass (locked, disk full, read-only, disconnected):
    the batch is tried again. The message says the cause, for the log."""


class ProcessWriter:
    def __init__(self, make_apply: Callable[..., Apply], args: tuple[Any, ...], settled: Settled,
                 *, linger: float = 0.002, max_batch: int = 512, retry_for: float = RETRY_FOR,
                 retrying: Callable[[list[int], str], None] | None = None) -> None:
        """`make_apply(*args)` runs in the child and returns `apply(ops)`, which writes one batch in
        one transaction and returns notes. `settled(numbers, error, notes)` runs in the parent (on a
        helper thread) once a batch is written or has failed for good; `retrying(numbers, cause)`
        when a batch failed for a reason that may pass and is being tried again. Ops are picklable;
        `submit` returns the op's sequence number."""
        self._make_apply, self._args = make_apply, args
        self._settled, self._retrying = settled, retrying
        self._linger, self._max_batch, self._retry_for = linger, max_batch, retry_for
        self._context = multiprocessing.get_context("spawn")  # fork would copy mitmproxy's threads and loop
        self._send_lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._unsettled: OrderedDict[int, bytes] = OrderedDict()  # number -> its frame, until settled
        self._unsettled_bytes = 0
        self._backlog: deque[memoryview] = deque()  # frames (or their unwritten tails) the pipe had no room for
        self._backlog_bytes = 0
        self._waiting_on: asyncio.AbstractEventLoop | None = None  # the loop told to drain the backlog
        self._flushed: dict[int, threading.Event] = {}
        self._closing = False
        self._restarts = 0
        self.dead: str | None = None  # why the child is gone, while it is (it is started again)
        self._start_child()

    # -- the child's life -----------------------------------------------------------------------

    def _start_child(self) -> None:
        self._inbox, self._fd, self._outbox, self._process = self._spawn()
        self._listen()

    def _spawn(self) -> tuple[Any, int, Any, Any]:
        """A new child, and the parent's ends of its pipe and queue."""
        reading_end, inbox = self._context.Pipe(duplex=False)
        fd = inbox.fileno()
        _enlarge_pipe(fd)
        os.set_blocking(fd, False)
        outbox = self._context.Queue()
        process = self._context.Process(
            target=_child, name="llm-cache-writer", daemon=True,
            args=(self._make_apply, self._args, reading_end, outbox, os.getpid(), self._linger, self._max_batch,
                  self._retry_for),
        )
        with _main_module_hidden():
            process.start()
        reading_end.close()  # the child has its own copy; ours would keep the pipe open after it dies
        return inbox, fd, outbox, process

    def _listen(self) -> None:
        self._acks = threading.Thread(target=self._read_acks, args=(self._process, self._outbox),
                                      name="llm-cache-writer-acks", daemon=True)
        self._acks.start()

    def _died(self, reason: str | None) -> None:
        """The child is gone: start another after a pause, and give it every unsettled op."""
        with self._send_lock:
            if self._closing or self.dead:
                return
            self.dead = reason or "unknown"
            self._forget_loop()
            self._backlog.clear()
            self._backlog_bytes = 0
            pause = RESTART_AFTER[min(self._restarts, len(RESTART_AFTER) - 1)]
            self._restarts += 1
            waiting = len(self._unsettled)
        logger.warning("llm-cache: the writer process stopped (%s); starting it again in %.0f s (%d writes wait)",
                       self.dead, pause, waiting)
        for event in list(self._flushed.values()):
            event.set()
        timer = threading.Timer(pause, self._restart)
        timer.daemon = True
        timer.start()

    def _restart(self) -> None:
        if self._closing:
            return
        try:
            spawned = self._spawn()  # outside the lock: submit never waits for a process to start
        except Exception as e:  # could not even start: try again later
            with self._send_lock:
                self.dead = None
            self._died(f"it could not be started: {e}")
            return
        with self._send_lock:
            with contextlib.suppress(OSError):
                self._inbox.close()
            self._inbox, self._fd, self._outbox, self._process = spawned
            self.dead = None
            frames = list(self._unsettled.values())
            for frame in frames:
                self._queue_frame(memoryview(frame))
            self._listen()
        logger.info("llm-cache: the writer process runs again; %d writes sent to it again", len(frames))
        with self._send_lock:
            if self._backlog:
                try:
                    self._write_backlog_within(SEND_TIMEOUT)  # a helper thread: it may wait for the child
                except RuntimeError as e:
                    logger.warning("llm-cache: the restarted writer takes nothing (%s)", e)

    # -- handing ops over -----------------------------------------------------------------------

    def submit(self, op: Any) -> int:
        """Hand an op to the child without blocking; returns its sequence number. Raises
        RuntimeError when too much is waiting to be settled."""
        number = next(self._numbers)
        self._send(number, pickle.dumps((number, op), protocol=pickle.HIGHEST_PROTOCOL))
        return number

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything submitted so far has been settled (or the child died)."""
        if self.dead:
            return
        token = next(self._numbers)
        done = self._flushed[token] = threading.Event()
        try:
            self._send(token, pickle.dumps((token, _FLUSH)), wait=True, keep=False)
        except (RuntimeError, OSError):
            self._flushed.pop(token, None)
            return
        if not done.wait(timeout):
            logger.warning("llm-cache: the writer did not catch up within %.0f s", timeout)
        self._flushed.pop(token, None)

    def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the child."""
        if self._process.is_alive() and not self.dead:
            with contextlib.suppress(RuntimeError, OSError):
                self._send(0, pickle.dumps((0, _STOP)), wait=True, keep=False)
            self._process.join(timeout)
        self._closing = True
        if self._process.is_alive():
            logger.warning("llm-cache: the writer did not finish within %.0f s; %d unwritten writes are lost",
                           timeout, len(self._unsettled))
            self._process.kill()
        self._acks.join(2)
        self._forget_loop()
        self._inbox.close()
        self._outbox.close()

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    def _send(self, number: int, payload: bytes, *, wait: bool = False, keep: bool = True) -> None:
        """Frame an op and write it: at once if there is room, else after the backlog. `keep`: hold
        its bytes until it is settled (for a restarted child). `wait` blocks until the pipe has taken
        everything (flush and close: never on the hot path)."""
        frame = len(payload).to_bytes(_HEADER, "big") + payload
        with self._send_lock:
            if keep:
                if self._unsettled_bytes + len(frame) > MAX_BACKLOG:
                    raise RuntimeError(f"the writer process is over {MAX_BACKLOG >> 20} MB behind")
                self._unsettled[number] = frame
                self._unsettled_bytes += len(frame)
            if self.dead:  # sent when the child is started again
                if not keep:
                    raise RuntimeError(f"the writer process stopped ({self.dead})")
                return
            self._queue_frame(memoryview(frame))
            if not self._backlog:
                return
            if wait:
                self._write_backlog_within(SEND_TIMEOUT)
            else:
                self._drain_later()

    def _queue_frame(self, frame: memoryview) -> None:
        """Write a frame now if nothing waits before it and the pipe takes it, else queue it."""
        written = 0 if self._backlog else self._write(frame)
        if written < len(frame):
            self._backlog.append(frame[written:])
            self._backlog_bytes += len(frame) - written

    def _write(self, frame: memoryview) -> int:
        """As much of the frame as the pipe takes now."""
        try:
            return os.write(self._fd, frame)
        except BlockingIOError:
            return 0
        except OSError:  # the child is gone (EPIPE): its acks thread restarts it
            return 0

    def _write_backlog(self) -> None:
        while self._backlog:
            head = self._backlog[0]
            written = self._write(head)
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
            if remaining <= 0 or not self._process.is_alive():
                raise RuntimeError(f"the writer process took nothing for {timeout:.0f} s")
            select.select([], [self._fd], [], min(remaining, 1.0))
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
            self._write_backlog()
            if not self._backlog:
                self._forget_loop()

    def _forget_loop(self) -> None:
        if self._waiting_on is not None:
            with contextlib.suppress(Exception):  # a closed loop has nothing to forget
                self._waiting_on.remove_writer(self._fd)
            self._waiting_on = None

    # -- hearing back ---------------------------------------------------------------------------

    def _read_acks(self, process: Any, outbox: Any) -> None:
        while True:
            try:
                kind, payload, error, notes = outbox.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    self._died(f"exit code {process.exitcode}")
                    return
                continue
            except (EOFError, OSError):
                if not self._closing:
                    self._died("its queue closed")
                return
            if kind == "settled":
                with self._send_lock:
                    for number in payload:
                        frame = self._unsettled.pop(number, None)
                        if frame is not None:
                            self._unsettled_bytes -= len(frame)
                    self._restarts = 0
                self._settled(payload, error, notes)
            elif kind == "notes":
                self._settled([], None, notes)
            elif kind == "retrying" and self._retrying is not None:
                self._retrying(payload, error)
            elif kind == "flushed" and payload in self._flushed:
                self._flushed[payload].set()
            elif kind == "dead":
                process.join(5)
                self._died(error)
                return
            elif kind == "stopped":
                return


def _enlarge_pipe(fd: int) -> None:
    """Linux pipes hold 64 KB, about three 20 KB requests; ask for PIPE_BYTES (other systems, or a
    lower limit in /proc/sys/fs/pipe-max-size, keep what they give)."""
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Frames:
    """The child's end of the pipe: length-prefixed pickled ops."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection  # kept, so its descriptor stays open
        self._fd = connection.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = bytearray()
        self.closed = False

    def read(self, timeout: float | None) -> list[tuple[int, Any]]:
        """The ops that have arrived, waiting up to `timeout` seconds for the first (None: don't
        wait). Sets `closed` when the parent's end is gone."""
        if timeout is not None and not self._complete_frame():
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
            if len(view) - at - _HEADER < size:
                break
            ops.append(pickle.loads(view[at + _HEADER:at + _HEADER + size]))
            at += _HEADER + size
        view.release()
        del self._buffer[:at]
        return ops

    def _complete_frame(self) -> bool:
        if len(self._buffer) < _HEADER:
            return False
        return len(self._buffer) - _HEADER >= int.from_bytes(self._buffer[:_HEADER], "big")


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
           linger: float, max_batch: int, retry_for: float) -> None:
    try:
        apply = make_apply(*args)
    except Exception as e:
        outbox.put(("dead", None, _one_line(e), []))
        return
    frames = _Frames(inbox)
    waiting: deque[tuple[int, Any]] = deque()
    later: deque[Later] = deque(maxlen=LATER_KEPT)
    budget, refilled = 0.5, time.monotonic()  # seconds of later work allowed now; when last topped up
    while True:
        now = time.monotonic()
        budget, refilled = min(0.5, budget + (now - refilled) * LATER_SHARE), now
        while later and not waiting and budget > 0:  # idle: work that waits for idleness, a piece at a time
            started = time.monotonic()
            _run_later(later.popleft(), outbox)
            budget -= time.monotonic() - started
            waiting.extend(frames.read(timeout=None))
        if not waiting:
            waiting.extend(frames.read(timeout=1.0))
            if not waiting:
                if frames.closed or os.getppid() != parent:  # the proxy is gone, however it went
                    return
                continue
            if linger and waiting[0][1] not in (_STOP, _FLUSH):
                time.sleep(linger)  # what arrives meanwhile joins this transaction
        waiting.extend(frames.read(timeout=None))
        batch: list[tuple[int, Any]] = []
        while waiting and len(batch) < max_batch and (not batch or batch[-1][1] != _STOP):
            batch.append(waiting.popleft())
        ops = [(number, op) for number, op in batch if op not in (_STOP, _FLUSH)]
        if ops:
            later.extend(_write_batch(apply, ops, outbox, retry_for))
        for number, op in batch:
            if op == _FLUSH:
                outbox.put(("flushed", number, None, []))
            elif op == _STOP:
                outbox.put(("stopped", None, None, []))
                return


def _run_later(work: Later, outbox: Any) -> None:
    try:
        notes = work.work()
    except Exception:  # a courtesy, never a failure
        return
    if notes:
        outbox.put(("notes", None, None, notes))


def _write_batch(apply: Apply, ops: list[tuple[int, Any]], outbox: Any, retry_for: float) -> list[Later]:
    """Write one batch; retry a failure that may pass, with backoff, for up to `retry_for` seconds.
    Returns the work the batch left for later."""
    numbers = [number for number, _ in ops]
    started, pause, told = time.monotonic(), 0.05, False
    while True:
        try:
            notes = apply([op for _, op in ops])
        except Retry as e:
            if time.monotonic() - started < retry_for:
                if not told:
                    outbox.put(("retrying", numbers, str(e), []))
                    told = True
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            outbox.put(("settled", numbers, f"{e} (gave up after {retry_for:.0f} s)", []))
            return []
        except Exception as e:  # the cache must never take the proxy down: report, drop, go on
            outbox.put(("settled", numbers, _one_line(e), []))
            return []
        outbox.put(("settled", numbers, None, [note for note in notes if not isinstance(note, Later)]))
        return [note for note in notes if isinstance(note, Later)]


def _one_line(error: BaseException) -> str:
    """A database error's first line: PostgreSQL's detail lines quote the whole failing row."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:300]}"
