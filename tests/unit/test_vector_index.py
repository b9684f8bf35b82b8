"""The semantic tier's vectors in memory: read once per context, kept up to date with what this
proxy records, read again after the refresh, bounded."""

import numpy as np

from llm_cache.vector_index import VectorIndex


def vector(*values: float) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def test_a_context_is_read_once_then_kept_up_to_date():
    reads = []

    def read():
        reads.append(1)
        return [("b", vector(0, 1)), ("a", vector(1, 0))]

    index = VectorIndex(max_rows=3)
    assert index.get("c", "e", read).keys == ["b", "a"] and len(reads) == 1
    index.add("c", "e", "n", vector(0.6, 0.8))  # recorded here: at once, newest first
    found = index.get("c", "e", read)
    assert found.keys == ["n", "b", "a"] and len(reads) == 1
    assert found.matrix.tolist() == [[np.float32(0.6), np.float32(0.8)], [0, 1], [1, 0]]
    index.add("c", "e", "m", vector(1, 1))  # past max_rows the oldest goes
    assert index.get("c", "e", read).keys == ["m", "n", "b"]
    index.add("c", "e", "x", vector(1, 1, 1))  # another dimension: not this context's
    index.add("other", "e", "y", vector(1, 0))  # a context not in memory is read when asked for
    index.drop(["n"])
    assert index.get("c", "e", read).keys == ["m", "b"] and len(reads) == 1


def test_a_dropped_key_stays_out_of_reads_that_still_find_it():
    index = VectorIndex(max_rows=10, refresh=0)
    index.drop(["a"])  # rejected: the writer has not deleted it yet
    assert index.get("c", "e", lambda: [("a", vector(1, 0)), ("b", vector(0, 1))]).keys == ["b"]


def test_a_context_is_read_again_after_the_refresh_and_memory_is_bounded():
    index = VectorIndex(max_rows=10, refresh=0)
    count = []

    def read():
        count.append(1)
        return [("a", vector(1, 0))]

    index.get("c", "e", read)
    index.get("c", "e", read)
    assert len(count) == 2
    small = VectorIndex(max_rows=10, max_bytes=8)  # room for one context of one 2-d vector
    small.get("c1", "e", lambda: [("a", vector(1, 0))])
    small.get("c2", "e", lambda: [("b", vector(0, 1))])
    again = []
    small.get("c1", "e", lambda: again.append(1) or [("a", vector(1, 0))])
    assert again == [1]  # c1 was forgotten for c2
    assert small.get("c3", "e", lambda: []).keys == []


def test_a_context_holding_a_reported_key_is_read_again():
    index = VectorIndex(max_rows=10)
    reads = []
    index.get("c", "e", lambda: reads.append(1) or [("a", vector(1, 0))])
    index.read_again(["a"])
    assert index.get("c", "e", lambda: reads.append(1) or []).keys == [] and len(reads) == 2
