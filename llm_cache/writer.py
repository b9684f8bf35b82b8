"""Every write happens in one child process, in batched transactions.

Measured on this machine: a peewee insert committed on mitmproxy's event loop stalls it for tens of
ms when SQLite checkpoints its WAL, and `asyncio.to_thread` inserts stalled it up to 150 ms. A
writer *thread* keeps commits off the loop but shares the GIL with it: under load every lookup that
released the GIL inside SQLite waited to get it back (a 10 us lookup took ~100 us), and recording
cost ~25% of mitmproxy's throughput. A writer process shares nothing. The loop only enqueues:
multiprocessing's queue pickles and sends from a feeder thread, so a slow writer never blocks it.

The child imports no mitmproxy. It stops when told to, when its queue says so, or when it sees
that its parent is gone.
"""

import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

Apply = Callable[[Sequence[Any]], list[str]]  # writes a batch; returns notes on entries it skipped

_STOP = "stop"
_FLUSH = "flush"


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
        self._inbox = context.Queue()
        self._outbox = context.Queue()
        self._settled = settled
        self._numbers = itertools.count(1)
        self._flushed: dict[int, threading.Event] = {}
        self._closing = False
        self.dead: str | None = None
        self._process = context.Process(
            target=_child, name="llm-cache-writer", daemon=True,
            args=(make_apply, args, self._inbox, self._outbox, os.getpid(), linger, max_batch),
        )
        with _main_module_hidden():
            self._process.start()
        self._acks = threading.Thread(target=self._read_acks, name="llm-cache-writer-acks", daemon=True)
        self._acks.start()

    def submit(self, op: Any) -> int:
        number = next(self._numbers)
        self._inbox.put((number, op))
        return number

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything submitted so far has been written (or has failed)."""
        if self.dead:
            return
        token = next(self._numbers)
        done = self._flushed[token] = threading.Event()
        self._inbox.put((token, _FLUSH))
        if not done.wait(timeout):
            logger.warning("llm-cache: the writer did not catch up within %.0f s", timeout)
        self._flushed.pop(token, None)

    def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the child."""
        self._closing = True
        if self._process.is_alive():
            self._inbox.put((0, _STOP))
            self._process.join(timeout)
        if self._process.is_alive():
            logger.warning("llm-cache: the writer did not finish within %.0f s; unwritten entries are lost", timeout)
            self._process.kill()
        self._acks.join(2)
        self._inbox.close()
        self._outbox.close()

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
            if kind == "settled":
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
           linger: float, max_batch: int) -> None:
    try:
        apply = make_apply(*args)
    except Exception as e:
        outbox.put(("dead", None, _one_line(e), []))
        return
    while True:
        try:
            batch = [inbox.get(timeout=1.0)]
        except queue.Empty:
            if os.getppid() != parent:  # the proxy is gone, however it went
                return
            continue
        if batch[0][1] not in (_STOP, _FLUSH):
            time.sleep(linger)  # gather a batch: one commit per entry would cost far more
        while len(batch) < max_batch and batch[-1][1] != _STOP:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
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
