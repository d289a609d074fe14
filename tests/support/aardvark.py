"""dnsd as aardvark-dns, started as netavark starts it: the ``run`` mode's server and waiting for a process to end
(tests/unit/dnsd/test_aardvark_run.py and test_aardvark_answers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import dnslib


class Server:
    """``aardvark-dns --config DIR -p PORT run`` as netavark starts it: returns once the server is ready."""

    def __init__(self, helper: str, directory, port: int):
        self.directory, self.port = directory, port
        self.started = subprocess.run([helper, "--config", str(directory), "-p", str(port), "run"],
                                      capture_output=True, text=True, timeout=30)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.directory / "aardvark.pid").read_text())  # netavark parses it whole: no newline
        except (OSError, ValueError):
            return None

    def ask(self, name: str, tcp: bool = False):
        query = dnslib.DNSRecord.question(name)
        reply = query.send("127.0.0.1", self.port, tcp=tcp, timeout=2)
        return dnslib.DNSRecord.parse(reply)

    def stop(self) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether the process exited in time; an exited one that no one has reaped yet (a zombie) counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False
