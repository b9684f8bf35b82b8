"""Compression bombs for the tests: a few hundred KB on the wire that decode to a GiB or more, made
piece by piece so that making one never holds the decoded size in memory."""

import functools
import zlib

import brotli
import zstandard

PIECE = bytes(1 << 20)


@functools.cache
def bomb(encoding: str, size: int = 1 << 30) -> bytes:
    """`size` zero bytes, compressed with a Content-Encoding (gzip, br or zstd)."""
    if encoding == "gzip":
        gz = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        return b"".join(gz.compress(PIECE) for _ in range(size // len(PIECE))) + gz.flush()
    if encoding == "br":
        br = brotli.Compressor(quality=5)
        return b"".join(br.process(PIECE) for _ in range(size // len(PIECE))) + br.finish()
    if encoding == "zstd":
        zs = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join(zs.compress(PIECE) for _ in range(size // len(PIECE))) + zs.flush()
    raise ValueError(encoding)
