"""The writer process, started from places other than mitmdump."""

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

from llm_cache import writer as writer_module
from llm_cache.writer import ProcessWriter
from tests.support.procs import ROOT, clean_env


def test_an_unguarded_main_script_is_not_run_again_by_the_writer(tmp_path):
    # Someone's own script that embeds the cache, with no `if __name__ == "__main__":` guard. If
    # spawn re-ran it in the writer process, it would print "started" twice (or worse, fail).
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import cache_models
        from llm_cache.records import Record
        print("started", flush=True)
        store = cache_models.CacheStore("sqlite:///{tmp_path}/c.sqlite3")
        store.put(Record(key="k" * 64, status=200, headers=[], body=b'{{"choices": []}}', is_stream=False,
                         created_at=1.0, family="openai.chat", request_body=b'{{"model": "m"}}'))
        store.flush()
        store.close()
        cache_models.open_database("sqlite:///{tmp_path}/c.sqlite3")
        print("entries", cache_models.CacheEntry.select().count(), flush=True)
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("started") == 1
    assert "entries 1" in result.stdout


def _logging_apply(path: str, pause: float):
    """A writer that notes each op it gets, after sleeping `pause` s on its first batch (so the
    pipe fills up behind it)."""
    first = [True]

    def apply(ops):
        if first[0]:
            time.sleep(pause)
            first[0] = False
        with open(path, "a") as f:
            f.writelines(f"{number} {len(blob)} {zlib.crc32(blob)}\n" for number, blob in ops)
        return []

    return apply


def _ops(count: int, size: int = 20_000) -> list[tuple[int, bytes]]:
    return [(n, bytes([n % 251]) * (size + n % 7)) for n in range(count)]


def _logged(ops: list[tuple[int, bytes]]) -> list[str]:
    """What the child logs for these ops, read intact and in order."""
    return [f"{number} {len(blob)} {zlib.crc32(blob)}" for number, blob in ops]


@contextlib.contextmanager
def _writer(log, pause: float):
    """A writer logging to `log` whose child sleeps `pause` s on its first batch."""
    writer = ProcessWriter(_logging_apply, (str(log), pause), lambda numbers, error, notes: None)
    try:
        yield writer
    finally:
        writer.close()


async def test_the_event_loop_never_waits_for_a_full_pipe(tmp_path, monkeypatch):
    # 200 ops of 20 KB are 4 MB, twice what the ring and the pipe hold, while the child sleeps:
    # submit must return at once, and the loop writes the rest when the pipe drains.
    monkeypatch.setattr(writer_module, "RING_BYTES", 1 << 20)
    log = tmp_path / "ops.txt"
    with _writer(log, 1.5) as writer:
        ops = _ops(200)
        writer.submit(ops[0])
        time.sleep(0.4)  # the child is asleep in its first batch now, reading nothing
        started = time.monotonic()
        for op in ops[1:]:
            writer.submit(op)
        assert time.monotonic() - started < 0.5
        assert writer._backlog  # the pipe is full: the rest waits in memory, not in a blocked write
        deadline = time.monotonic() + 30
        while writer._backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the loop, not a thread, writes the backlog
        assert not writer._backlog
        writer.flush()
        assert log.read_text().splitlines() == _logged(ops)


def test_without_an_event_loop_a_full_pipe_is_written_before_submit_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "RING_BYTES", 1 << 20)
    log = tmp_path / "ops.txt"
    with _writer(log, 0.5) as writer:
        for op in _ops(200):
            writer.submit(op)
        assert not writer._backlog
        writer.flush()
        assert log.read_text().splitlines() == _logged(_ops(200))


@pytest.mark.parametrize("ring", [None, 100_003, 8 << 20], ids=["no ring", "small ring", "default ring"])
def test_ops_arrive_intact_and_in_order_through_the_ring_and_the_pipe(tmp_path, monkeypatch, ring):
    # A small ring of an odd size: ops wrap around its end, and those that find it full go through
    # the pipe whole, between ops that went through the ring. Without memfd there is no ring.
    if ring is None:
        monkeypatch.setattr(writer_module._Ring, "create", classmethod(lambda cls, size: None))
    else:
        monkeypatch.setattr(writer_module, "RING_BYTES", ring)
    log = tmp_path / "ops.txt"
    ops = _ops(300, size=9_000) + [(300, b"x" * 200_000)] + _ops(50, size=30_000)  # one op bigger than the ring
    with _writer(log, 0.2) as writer:
        assert (writer._ring is None) == (ring is None)
        for start in range(0, len(ops), 8):  # in waves, so the child hands space back in between
            for op in ops[start:start + 8]:
                writer.submit(op)
            writer.flush()
        if ring is not None:
            assert writer._ring_head > min(ring, 1_000_000)  # used, and the small one went round
    assert log.read_text().splitlines() == _logged(ops)


def test_ops_to_a_dead_writer_are_refused(tmp_path):
    with _writer(tmp_path / "ops.txt", 0.0) as writer:
        writer._process.kill()
        writer._process.join(5)
        with pytest.raises(RuntimeError, match="writer process stopped"):
            for op in _ops(100):  # the first ones may still fit in the pipe
                writer.submit(op)


async def test_a_writer_too_far_behind_refuses_new_ops(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_BACKLOG", 2_000_000)
    monkeypatch.setattr(writer_module, "RING_BYTES", 1 << 20)
    with _writer(tmp_path / "ops.txt", 3.0) as writer:
        ops = _ops(300)
        writer.submit(ops[0])
        time.sleep(0.4)  # the child sleeps in its first batch: the pipe fills, then the backlog
        with pytest.raises(RuntimeError, match="MB behind"):
            for op in ops[1:]:
                writer.submit(op)
        assert writer._backlog_bytes <= 2_000_000
