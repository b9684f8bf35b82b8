"""The semantic tier's vectors in memory: a context's newest vectors are read from the database
once, as one matrix, then kept up to date with what this proxy records, and read again every
REFRESH seconds (for what other proxies on the same cache recorded, and reports). Without it each
lookup read and unpacked up to 1,000 rows (~4 ms of CPU for a full context, on every exact miss).

Bounded by MAX_BYTES of vectors, least recently used contexts first out. An entry this proxy
dropped (rejected, reported) is kept out even of reads that still find it, until the writer has
surely deleted or counted it; one deleted otherwise (evicted, by the command line) may stay a
candidate until the next read: its lookup then finds no entry and the next candidate is tried."""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

REFRESH = 5.0  # seconds
FORGET_DROPPED = 60.0  # seconds a dropped key is kept out of what is read (the writer deletes it meanwhile)
MAX_BYTES = 64 << 20


class Vectors(NamedTuple):
    keys: list[str]
    matrix: np.ndarray  # one unit vector (float32) per key, in rows
    read_at: float


class VectorIndex:
    def __init__(self, max_rows: int, max_bytes: int = MAX_BYTES, refresh: float = REFRESH) -> None:
        """`max_rows`: the newest vectors of a context that are kept (as many as are read)."""
        self._max_rows, self._max_bytes, self._refresh = max_rows, max_bytes, refresh
        self._contexts: OrderedDict[tuple[str, str], Vectors] = OrderedDict()
        self._bytes = 0
        self._dropped: dict[str, float] = {}  # key -> when: not offered even if a read still finds it
        self._lock = threading.Lock()

    def get(self, context: str, embedder: str, read: Callable[[], list[tuple[str, bytes]]]) -> Vectors:
        """The vectors of a context, newest first (`read()`: its rows from the database, newest
        first, when they must be read)."""
        where = (context, embedder)
        with self._lock:
            found = self._contexts.get(where)
            if found is not None and time.monotonic() - found.read_at < self._refresh:
                self._contexts.move_to_end(where)
                return found
        rows = read()
        with self._lock:
            now = time.monotonic()
            self._dropped = {key: when for key, when in self._dropped.items() if now - when < FORGET_DROPPED}
            if self._dropped:
                rows = [(key, blob) for key, blob in rows if key not in self._dropped]
        dimensions = {len(blob) for _, blob in rows}
        if len(dimensions) > 1:  # another embedder's size under the same name: only the commonest kept
            size = max(dimensions, key=lambda d: sum(len(blob) == d for _, blob in rows))
            rows = [(key, blob) for key, blob in rows if len(blob) == size]
        matrix = (np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), -1)
                  if rows else np.zeros((0, 0), dtype="<f4"))
        fresh = Vectors([key for key, _ in rows], matrix, time.monotonic())
        with self._lock:
            self._put(where, fresh)
        return fresh

    def add(self, context: str, embedder: str, key: str, vector: bytes) -> None:
        """A vector this proxy records: a context in memory has it at once."""
        where = (context, embedder)
        with self._lock:
            found = self._contexts.get(where)
            if found is None or (found.matrix.size and found.matrix.shape[1] * 4 != len(vector)):
                return
            row = np.frombuffer(vector, dtype="<f4").reshape(1, -1)
            keys = [k for k in found.keys if k != key]
            kept = found.matrix[[i for i, k in enumerate(found.keys) if k != key]] if len(keys) < len(found.keys) \
                else found.matrix
            rows = np.vstack([row, kept])[: self._max_rows] if kept.size else row
            self._put(where, Vectors([key, *keys][: self._max_rows], rows, found.read_at))

    def drop(self, keys: Iterable[str]) -> None:
        """Entries no longer to be offered (reported as wrong, rejected)."""
        gone = set(keys)
        with self._lock:
            self._dropped.update(dict.fromkeys(gone, time.monotonic()))
            for where, found in list(self._contexts.items()):
                if gone.intersection(found.keys):
                    kept = [i for i, key in enumerate(found.keys) if key not in gone]
                    self._put(where, Vectors([found.keys[i] for i in kept], found.matrix[kept], found.read_at))

    def read_again(self, keys: Iterable[str]) -> None:
        """The contexts holding these keys are read from the database at their next lookup (their
        entries were reported: the count that may block them is the database's)."""
        wanted = set(keys)
        with self._lock:
            for where, found in list(self._contexts.items()):
                if wanted.intersection(found.keys):
                    self._contexts[where] = found._replace(read_at=float("-inf"))

    def _put(self, where: tuple[str, str], vectors: Vectors) -> None:
        old = self._contexts.pop(where, None)
        if old is not None:
            self._bytes -= old.matrix.nbytes
        self._contexts[where] = vectors
        self._bytes += vectors.matrix.nbytes
        while self._bytes > self._max_bytes and len(self._contexts) > 1:
            _, forgotten = self._contexts.popitem(last=False)
            self._bytes -= forgotten.matrix.nbytes
