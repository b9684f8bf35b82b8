"""A `flow.response.stream` callable that forwards each chunk untouched (the client sees the stream as
it arrives) and keeps a decoded copy for the cache (compressed streams are stored decoded)."""

import zlib
from collections.abc import Callable

import brotli
import zstandard

Decoder = Callable[[bytes], bytes]

MAX_RECORDED_STREAM = 64 * 1024 * 1024  # past this the stream still flows, but is not recorded


def make_decoder(content_encoding: str) -> Decoder | None:
    """An incremental decoder for a Content-Encoding, or None when we cannot decode it."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return bytes
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS).decompress
    if encoding == "br":
        return brotli.Decompressor().process
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress
    return None


class StreamTee:
    def __init__(self, content_encoding: str, limit: int = MAX_RECORDED_STREAM) -> None:
        self._decode = make_decoder(content_encoding)
        self._limit = limit
        self.body = bytearray()
        self.finished = False
        self.problem: str | None = None
        if self._decode is None:
            self.problem = f"cannot decode content-encoding {content_encoding!r}"

    def __call__(self, data: bytes) -> bytes:
        if not data:  # mitmproxy's end-of-message call
            self.finished = True
        elif self.problem is None and self._decode is not None:
            try:
                self.body += self._decode(data)
            except (zlib.error, brotli.error, zstandard.ZstdError) as e:
                self._give_up(f"stream did not decode: {e}")
            if len(self.body) > self._limit:
                self._give_up(f"stream larger than {self._limit} bytes")
        return data

    def _give_up(self, problem: str) -> None:
        self.problem = problem
        self.body = bytearray()
        self._decode = None
