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
from tests.support.procs import ROOT, clean_env, wait_for


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


def test_without_an_event_loop_a_full_pipe_is_written_before_submit_returns(tmp_path):
    log = tmp_path / "ops.txt"
    with _writer(log, 0.5) as writer:
        for op in _ops(200):
            writer.submit(op)
        assert not writer._backlog
        writer.flush()
        assert log.read_text().splitlines() == _logged(_ops(200))


def test_ops_arrive_intact_and_in_order(tmp_path):
    log = tmp_path / "ops.txt"
    ops = _ops(300, size=9_000) + [(300, b"x" * 2_000_000)] + _ops(50, size=30_000)  # one op bigger than the pipe
    with _writer(log, 0.2) as writer:
        for start in range(0, len(ops), 8):  # in waves, so the child reads in between
            for op in ops[start:start + 8]:
                writer.submit(op)
            writer.flush()
    assert log.read_text().splitlines() == _logged(ops)


def test_a_dead_writer_is_started_again_and_gets_what_it_had_not_settled(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "RESTART_AFTER", (0.2,))
    log = tmp_path / "ops.txt"
    with _writer(log, 0.0) as writer:
        first = _ops(3)
        for op in first:
            writer.submit(op)
        writer.flush()
        writer._process.kill()
        assert wait_for(lambda: writer.dead is not None)
        later = [(n, blob) for n, blob in _ops(6)[3:]]
        for op in later:  # taken while the writer is down, written by the next one
            writer.submit(op)
        assert wait_for(lambda: writer.dead is None and writer.unsettled == 0, timeout=10)
    assert log.read_text().splitlines() == _logged(first + later)


def _flaky_apply(path: str, failures: int):
    """A writer whose first `failures` batches fail with a cause that may pass."""
    left = [failures]

    def apply(ops):
        if left[0]:
            left[0] -= 1
            raise writer_module.Retry("the disk is full")
        with open(path, "a") as f:
            f.writelines(f"{number}\n" for number, _ in ops)
        return []

    return apply


def test_a_failure_that_may_pass_is_retried_and_reported_once(tmp_path):
    events = []
    log = tmp_path / "ops.txt"
    writer = ProcessWriter(_flaky_apply, (str(log), 3), lambda numbers, error, notes: events.append(("settled", error)),
                           retrying=lambda numbers, cause: events.append(("retrying", cause)))
    try:
        writer.submit((1, b"x"))
        writer.flush()
        assert wait_for(lambda: ("settled", None) in events)
    finally:
        writer.close()
    assert events == [("retrying", "the disk is full"), ("settled", None)]
    assert log.read_text() == "1\n"


def test_a_failure_that_does_not_pass_in_time_is_reported_as_lost(tmp_path):
    events = []
    writer = ProcessWriter(_flaky_apply, (str(tmp_path / "ops.txt"), 10_000),
                           lambda numbers, error, notes: events.append(error), retry_for=0.3)
    try:
        writer.submit((1, b"x"))
        assert wait_for(lambda: events, timeout=10)
    finally:
        writer.close()
    assert events[0].startswith("the disk is full (gave up after")


async def test_a_writer_too_far_behind_refuses_new_ops(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_BACKLOG", 2_000_000)
    with _writer(tmp_path / "ops.txt", 3.0) as writer:
        ops = _ops(300)
        writer.submit(ops[0])
        time.sleep(0.4)  # the child sleeps in its first batch: nothing is settled meanwhile
        with pytest.raises(RuntimeError, match="MB behind"):
            for op in ops[1:]:
                writer.submit(op)
        assert writer._unsettled_bytes <= 2_000_000
