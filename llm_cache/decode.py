"""Content-Encoding, decoded within a limit: 6.5 KB of brotli can inflate to 4 GiB. A body is
decoded piece by piece, never holding more than the limit (and one piece), and decoding stops with
TooLarge as soon as the output passes it. The body itself is forwarded as it came, untouched.
"""

import zlib
from collections.abc import Callable
from typing import Any

import brotli
import zstandard

PIECE = 64 * 1024  # bytes of output produced at a time


class TooLarge(ValueError):
    """The decoded body passed the limit."""


class Decoder:
    """Decodes one body, fed in the pieces it arrives in; raises TooLarge past `limit` bytes of
    output and ValueError when the body does not decode."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        encoding = content_encoding.strip().lower()
        self._feed: Callable[[bytes], bytes]
        if encoding in ("", "identity"):
            self._feed = self._identity
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if "gzip" in encoding else zlib.MAX_WBITS)
            self._feed = self._inflate
        elif encoding == "br":
            self._brotli = brotli.Decompressor()
            self._feed = self._unbrotli
        elif encoding == "zstd":
            self._out = bytearray()
            sink: Any = _Sink(self)  # a file-like object: write() is all the writer calls
            self._zstd = zstandard.ZstdDecompressor().stream_writer(sink, write_size=PIECE)
            self._feed = self._unzstd
        else:
            raise ValueError(f"cannot decode content-encoding {content_encoding!r}")

    def feed(self, data: bytes) -> bytes:
        try:
            return self._feed(data)
        except (zlib.error, brotli.error, zstandard.ZstdError) as e:
            raise ValueError(f"the body does not decode: {e}") from None

    def _count(self, out: bytes | bytearray) -> None:
        self.size += len(out)
        if self.size > self.limit:
            raise TooLarge(f"decodes to more than {self.limit} bytes")

    def _identity(self, data: bytes) -> bytes:
        self._count(data)
        return data

    def _inflate(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            piece = self._zlib.decompress(data, PIECE)
            self._count(piece)
            out += piece
            data = self._zlib.unconsumed_tail
        return bytes(out)

    def _unbrotli(self, data: bytes) -> bytes:
        # The limit is soft (a piece may pass it by up to a piece), and output may be pending even
        # when can_accept_more_data() says yes: ask with empty input until nothing more comes.
        out = bytearray()
        piece = self._brotli.process(data, output_buffer_limit=PIECE)
        while piece:
            self._count(piece)
            out += piece
            if self._brotli.is_finished():
                break
            piece = self._brotli.process(b"", output_buffer_limit=PIECE)
        return bytes(out)

    def _unzstd(self, data: bytes) -> bytes:
        self._zstd.write(data)
        out, self._out = bytes(self._out), bytearray()
        return out


class _Sink:
    """Where zstandard's stream writer puts each piece of output it makes."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def write(self, piece: bytes) -> int:
        self.decoder._count(piece)
        self.decoder._out += piece
        return len(piece)


def decode(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """A whole body, decoded within the limit; raises TooLarge or ValueError."""
    return Decoder(content_encoding, limit).feed(raw)
