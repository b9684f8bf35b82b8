"""Decoding within a limit: compression bombs stop at the limit, in bounded memory."""

import gzip
import tracemalloc
import zlib

import brotli
import pytest
import zstandard

from llm_cache.decode import Decoder, TooLarge, decode

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}
BOMB = 256 * 2**20  # zeros that compress to a few hundred KB at most


@pytest.fixture(scope="module")
def bombs():
    zeros = bytes(BOMB)
    return {name: encode(zeros) for name, encode in ENCODERS.items()}


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_bomb_stops_at_the_limit_in_bounded_memory(bombs, encoding):
    wire = bombs[encoding]
    assert len(wire) < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            decode(wire, encoding, 4 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak} bytes held while decoding"


@pytest.mark.parametrize("encoding", [*ENCODERS, "identity", ""])
def test_bodies_within_the_limit_decode_whole_and_in_pieces(encoding):
    body = b'{"model": "m", "messages": [' + b'{"role": "user", "content": "hi"},' * 5000 + b"{}]}"
    wire = ENCODERS.get(encoding, lambda b: b)(body)
    assert decode(wire, encoding, len(body)) == body
    decoder = Decoder(encoding, len(body))
    assert b"".join(decoder.feed(wire[i:i + 333]) for i in range(0, len(wire), 333)) == body
    with pytest.raises(TooLarge):
        decode(wire, encoding, len(body) - 1)


def test_corrupt_and_unknown_encodings_are_value_errors():
    with pytest.raises(ValueError, match="does not decode") as corrupt:
        decode(b"not gzip at all", "gzip", 100)
    assert not isinstance(corrupt.value, TooLarge)
    with pytest.raises(ValueError, match="cannot decode content-encoding 'compress'"):
        decode(b"x", "compress", 100)
