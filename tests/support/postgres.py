"""A throwaway PostgreSQL cluster of a test's own (Debian's packages; .ci/run installs them), so a
test can freeze it, stop it and start it again without touching anyone else's server."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL binaries (apt-get install postgresql)")
        self.bin = bin_dir
        # Directly under /tmp: the server's own user must reach it (pytest's folders are root's alone).
        self.folder = folder = Path(tempfile.mkdtemp(prefix="llm-cache-pg-"))
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(folder, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as_owner(self.bin / "initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust")
        self.start()
        self._as_owner(self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "cache")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/cache"

    def _as_owner(self, *command: str | Path) -> None:
        argv = [str(c) for c in command]
        if os.getuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._as_owner(self.bin / "pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w",
                       "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._as_owner(self.bin / "pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        self.thaw()
        subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "status"], capture_output=True)
        if (self.folder / "data" / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def processes(self) -> list[int]:
        """The postmaster and every process it started (its backends among them)."""
        main = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        found, todo = [], [main]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                todo += [int(c) for c in (task / "children").read_text().split()]
        return found

    def freeze(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            for pid in self.processes():
                os.kill(pid, signal.SIGCONT)
