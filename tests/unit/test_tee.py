import gzip
import zlib

import brotli
import pytest
import zstandard

from llm_cache.tee import StreamTee

BODY = b"".join(b"data: {\"n\": %d}\n\n" % i for i in range(200)) + b"data: [DONE]\n\n"


def chunks(data, size=37):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "encoding, encode",
    [
        ("", lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
        ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_tee_forwards_bytes_untouched_and_keeps_them_decoded(encoding, encode):
    wire = encode(BODY)
    tee = StreamTee(encoding)
    forwarded = b"".join(tee(c) for c in chunks(wire))
    assert tee(b"") == b""
    assert forwarded == wire
    assert (tee.finished, tee.problem, bytes(tee.body)) == (True, None, BODY)


def test_unknown_encoding_still_flows_but_is_not_recorded():
    tee = StreamTee("compress")
    assert tee(b"abc") == b"abc"
    assert tee.problem == "cannot decode content-encoding 'compress'"


def test_corrupt_compressed_stream_is_not_recorded():
    tee = StreamTee("gzip")
    assert tee(b"definitely not gzip") == b"definitely not gzip"
    assert tee.problem is not None and tee.problem.startswith("stream did not decode")
    assert tee.body == b""


def test_oversized_stream_is_dropped_from_memory():
    tee = StreamTee("", limit=100)
    for c in chunks(BODY):
        tee(c)
    assert tee.problem == "stream larger than 100 bytes" and tee.body == b""


def test_unfinished_stream_is_flagged():
    tee = StreamTee("")
    tee(b"data: 1\n\n")
    assert not tee.finished
