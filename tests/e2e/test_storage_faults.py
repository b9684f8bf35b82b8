"""Honest about what it stored, through a real mitmdump with its database in trouble: a full disk, a
file system turned read-only, the file deleted, another process holding the lock, the writer or the
whole proxy killed. Whatever happens, `X-LLM-Cache-Store: stored` means the entry is in the
database, every request is answered, and the log names the real cause."""

import contextlib
import os
import random
import re
import signal
import sqlite3
import ssl
import string
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Mitmdump, wait_for

URL = "https://api.openai.com/v1/chat/completions"


def client(proxy: Mitmdump) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                        trust_env=False)


def noise(n: int, size: int = 3000) -> str:
    """Text that does not compress: entries that fill a small disk quickly."""
    rng = random.Random(n)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def misses(proxy: Mitmdump, prompts: list[str], workers: int = 6) -> dict[str, str]:
    """Send each prompt once, concurrently, each on a connection of its own (as agent processes
    do); returns prompt -> X-LLM-Cache-Store (every answer is a 200)."""
    def one(prompt: str) -> tuple[str, str]:
        with client(proxy) as c:
            response = c.post(URL, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
        assert response.status_code == 200, response.text
        return prompt, response.headers.get("x-llm-cache-store", "")

    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, prompts))


def stored_prompts(db: Path) -> set[str]:
    """The prompts whose entries are in the database file (read with SQLite itself)."""
    import zlib

    import orjson
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("select request from cache_entry").fetchall()
    return {orjson.loads(zlib.decompress(blob))["body"]["messages"][0]["content"] for (blob,) in rows}


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def proxy_on(folder: Path, db: Path, certs, fake, *extra: str) -> Mitmdump:
    return Mitmdump(folder, certs=certs, fake=fake, db_url=f"sqlite:///{db}", extra=list(extra))


def test_a_full_disk_loses_no_entry_it_called_stored_and_says_why(tmp_path, certs, fake):
    with tmpfs(tmp_path / "small", "3m") as small:
        db = small / "cache.sqlite3"
        proxy = proxy_on(tmp_path / "proxy", db, certs, fake, "--set", "llm_cache_write_retry=3")
        try:
            outcomes = misses(proxy, [f"disk {n} {noise(n)}" for n in range(1200)])
            time.sleep(4)  # the writer gives up on what did not fit
        finally:
            proxy.stop()
        stored = {p for p, outcome in outcomes.items() if outcome == "stored"}
        assert 50 < len(stored) < len(outcomes), f"{len(stored)} stored: the disk did not fill up"
        assert stored <= stored_prompts(db), "an entry acknowledged as stored is not in the database"
        others = {outcome for outcome in outcomes.values() if outcome != "stored"}
        assert all(o.startswith("queued: not written yet (the disk is full)") for o in others), others
        log = proxy.text()
        assert "could not write to" in log and "the disk is full" in log
        assert "cannot rollback" not in log


def test_database_files_turned_read_only_lose_no_entry_called_stored(tmp_path, certs, fake):
    # A tmpfs cannot be remounted read-only while SQLite holds its files open for writing; making
    # the files immutable (chattr +i, which binds root too) fails the writes the same way.
    db = tmp_path / "cache.sqlite3"
    proxy = proxy_on(tmp_path / "proxy", db, certs, fake, "--set", "llm_cache_write_retry=3")
    files = [str(tmp_path / name) for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm")]
    try:
        before = misses(proxy, [f"before {n}" for n in range(20)])
        if subprocess.run(["chattr", "+i", *files], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available on this file system")
        try:
            after = misses(proxy, [f"after {n}" for n in range(20)])
            time.sleep(4)
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
    finally:
        proxy.stop()
    assert set(before.values()) == {"stored"}
    assert {p for p, o in after.items() if o == "stored"} <= stored_prompts(db)
    assert all(o.startswith("queued: not written yet (") for o in after.values()), after
    log = proxy.text()
    assert "could not write to" in log and "a disk I/O error" in log and "cannot rollback" not in log
    assert re.search(r"lost \d+ entr(y|ies): could not write to .*gave up after 3 s", log)  # llm_cache_write_retry


def test_a_deleted_database_file_is_noticed_and_made_again(tmp_path, certs, fake):
    db = tmp_path / "cache.sqlite3"
    proxy = proxy_on(tmp_path / "proxy", db, certs, fake)
    try:
        assert set(misses(proxy, ["kept 1", "kept 2"]).values()) == {"stored"}
        for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
            with contextlib.suppress(FileNotFoundError):
                (tmp_path / name).unlink()
        assert set(misses(proxy, ["new 1", "new 2"]).values()) == {"stored"}
        assert "was deleted or replaced; writing to a new one" in proxy.text()
        time.sleep(1.2)  # the proxy checks its file once a second
        with client(proxy) as c:  # what was in the deleted file is not served from it any more
            gone = c.post(URL, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "kept 1"}]})
        assert gone.headers["x-llm-cache"] == "MISS"
    finally:
        proxy.stop()
    assert {"new 1", "new 2", "kept 1"} <= stored_prompts(db)


def test_a_lock_held_by_another_process_is_waited_out(tmp_path, certs, fake):
    db = tmp_path / "cache.sqlite3"
    proxy = proxy_on(tmp_path / "proxy", db, certs, fake)
    try:
        misses(proxy, ["first"])
        holder = sqlite3.connect(db, timeout=0, check_same_thread=False)  # released by a timer thread
        holder.execute("BEGIN EXCLUSIVE")
        released = threading.Timer(8, holder.rollback)
        released.start()
        started = time.monotonic()
        outcomes = misses(proxy, [f"locked {n}" for n in range(30)])
        assert time.monotonic() - started < 8 + 5, "requests waited for the lock"
        released.join()
        holder.close()
        assert wait_for(lambda: {f"locked {n}" for n in range(30)} <= stored_prompts(db), timeout=30)
    finally:
        proxy.stop()
    assert "the database is locked by another process" in proxy.text()
    assert any(o.startswith("queued: not written yet") for o in outcomes.values())


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def writer_pid(proxy: Mitmdump) -> int:
    """The writer process among mitmdump's children (multiprocessing's resource tracker is one too)."""
    (pid,) = [c for c in children(proxy.proc.pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
    return pid


def test_killing_the_writer_loses_nothing_and_recording_goes_on(tmp_path, certs, fake):
    db = tmp_path / "cache.sqlite3"
    proxy = proxy_on(tmp_path / "proxy", db, certs, fake)
    try:
        assert set(misses(proxy, ["one", "two"]).values()) == {"stored"}
        os.kill(writer_pid(proxy), signal.SIGKILL)
        assert wait_for(lambda: "the writer process stopped" in proxy.text())
        assert set(misses(proxy, [f"while restarting {n}" for n in range(5)]).values()) <= {
            "stored", "queued: not written yet (the writer has not committed it yet)"}
        assert wait_for(lambda: "the writer process runs again" in proxy.text(), timeout=15)
        assert set(misses(proxy, ["three"]).values()) == {"stored"}
        assert wait_for(lambda: {f"while restarting {n}" for n in range(5)} <= stored_prompts(db), timeout=15)
    finally:
        proxy.stop()


def test_killing_the_proxy_and_its_writer_loses_no_entry_called_stored(tmp_path, certs, fake):
    db = tmp_path / "cache.sqlite3"
    proxy = proxy_on(tmp_path / "proxy", db, certs, fake)
    outcomes: dict[str, str] = {}
    try:
        outcomes = misses(proxy, [f"burst {n} {noise(n, 500)}" for n in range(400)], workers=8)
    finally:
        for pid in children(proxy.proc.pid) + [proxy.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proxy.proc.wait(5)
    stored = {p for p, o in outcomes.items() if o == "stored"}
    assert len(stored) == len(outcomes)
    assert stored <= stored_prompts(db)
