"""The query log: one JSON line per query, a rate limit per second, rotation by size."""

from __future__ import annotations

import json
import os
import stat

import pytest

from dnsd.core.wire import NXDOMAIN
from dnsd.ops.querylog import QueryLog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_query_with_its_fields(tmp_path, dns):
    log = QueryLog(str(tmp_path / "q.log"))
    log.write("10.0.1.2", "app", dns.query("Web.App", "AAAA"), NXDOMAIN, "cache", 0.0000421)
    log.close()
    (line,) = lines(tmp_path / "q.log")
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert {key: value for key, value in line.items() if key != "time"} == {
        "client": "10.0.1.2", "network": "app", "name": "Web.App.", "type": "AAAA", "rcode": "NXDOMAIN",
        "source": "cache", "duration_us": 42}


def test_past_the_rate_the_rest_of_the_second_is_left_out_and_counted(tmp_path, dns):
    clock = Clock()
    log = QueryLog(str(tmp_path / "q.log"), rate=5, clock=clock)
    for _ in range(50):
        log.write("10.0.1.2", "app", dns.query("web"), 0, "local", 0.00001)
    clock.now += 1
    log.write("10.0.1.2", "app", dns.query("web"), 0, "local", 0.00001)
    log.close()
    written = lines(tmp_path / "q.log")
    assert len(written) == 7
    assert written[5] == {"time": written[5]["time"], "dropped": 45}
    assert log.dropped_total == 45


def test_the_file_is_rotated_and_old_files_are_bounded(tmp_path, dns):
    log = QueryLog(str(tmp_path / "q.log"), rate=10**6, max_bytes=2000, backups=2)
    for _ in range(200):
        log.write("10.0.1.2", "app", dns.query("web"), 0, "local", 0.00001)
    log.close()
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["q.log", "q.log.1", "q.log.2"]
    assert all(path.stat().st_size <= 2000 for path in tmp_path.iterdir())


def test_garbage_is_logged_as_such(tmp_path):
    log = QueryLog(str(tmp_path / "q.log"))
    log.write("10.0.1.2", "app", b"\x00\x01garbage", None, "local", 0.0)
    log.close()
    (line,) = lines(tmp_path / "q.log")
    assert (line["name"], line["type"], line["rcode"]) == ("", "other", "")


@pytest.fixture
def open_umask():
    """The usual umask (022): a file made with the default mode would be world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_log_and_its_rotated_files_are_the_owners_alone(tmp_path, dns, open_umask):
    """Every container's queries are in it (issue 24): 0600 whatever the umask, also once rotated."""
    log = QueryLog(str(tmp_path / "q.log"), rate=10**6, max_bytes=2000, backups=2)
    for _ in range(200):
        log.write("10.0.1.2", "app", dns.query("web"), 0, "local", 0.00001)
    log.close()
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"q.log": 0o600, "q.log.1": 0o600, "q.log.2": 0o600}


def test_a_wider_log_left_from_before_is_narrowed(tmp_path, dns, open_umask):
    path = tmp_path / "q.log"
    path.write_text("")
    path.chmod(0o644)
    log = QueryLog(str(path))
    log.write("10.0.1.2", "app", dns.query("web"), 0, "local", 0.00001)
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(lines(path)) == 1


def test_a_symlink_at_the_path_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "q.log").symlink_to(target)
    with pytest.raises(OSError):
        QueryLog(str(tmp_path / "q.log"))
    assert target.read_text() == "precious\n"
