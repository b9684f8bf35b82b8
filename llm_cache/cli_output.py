"""What the command line says (scripts/llm-cache): one JSON document a line for pipes; for people,
tables, sizes, times, money and a progress line; and Failure, a command's message when it cannot do
what was asked."""

import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import orjson


class Failure(Exception):
    """A command cannot do what was asked: the message is for the user, the exit status is 1."""


def emit(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, default=_plain).decode() + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON")


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def money(value: Decimal | None) -> str:
    if value is None:
        return "unknown price"
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [list(map(str, head))] + [[f"{c:,}" if isinstance(c, int) and not isinstance(c, bool) else str(c)
                                       for c in row] for row in rows]
    numeric = [all(row[i].replace(",", "").isdigit() for row in cells[1:]) and len(cells) > 1
               for i in range(len(head))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) if numeric[i] else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                     for row in cells)


class Progress:
    """`label done/total` on one line of stderr, only when stderr is a terminal (never in a pipe or a log)."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, total
        self.stream = sys.stderr if stream is None else stream
        self.shown = False
        self.last = 0.0
        self.on = self.stream.isatty()

    def __call__(self, done: int) -> None:
        if self.on and time.monotonic() - self.last >= 0.2:
            self.last = time.monotonic()
            of = f"/{self.total:,}" if self.total is not None else ""
            self.stream.write(f"\r{self.label} {done:,}{of}")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
